// Class activation maps (METHOD.md, Phase II): Grad-CAM at a chosen layer,
// its exact analytic form when that layer feeds pooling + linear, a batched
// Grad-CAM otherwise, and the reference's per-image Grad-CAM as a baseline.
#pragma once

#include <torch/types.h>

#include <string>

#include "fsa/models/backbone.h"

namespace fsa::cam {

/// Min–max normalises each map to [0, 1]: (M − min)/(max − min) per image;
/// a flat map (max = min) becomes all zeros, never NaN.
/// maps: float [N, h, w]; returns float [N, h, w].
torch::Tensor normalize_maps(const torch::Tensor& maps);

/// Analytic CAM: when A feeds global average pooling and a linear layer W,
/// ∂y_c/∂A_k(i,j) = W[c][k]/(h·w), so Grad-CAM is ReLU(Σ_k W[c][k] A_k) up to a
/// positive factor, removed by normalisation. No backward pass; one batched
/// product. a: float [N, K, h, w]; weight: float [C, K]; classes: int64 [N].
/// Returns normalised float [N, h, w].
torch::Tensor analytic_cam(const torch::Tensor& a, const torch::Tensor& weight,
                           const torch::Tensor& classes);

/// Batched Grad-CAM through the model's head at `cam_layer`: one backward of
/// Σ_n y_n[c_n] yields every image's gradient (images do not interact in
/// evaluation mode). α_k = mean_ij ∂y_c/∂A_k(i,j); M = ReLU(Σ_k α_k A_k),
/// normalised. The model's head must be in evaluation mode.
/// a: float [N, K, h, w] (not requiring grad); classes: int64 [N].
torch::Tensor grad_cam(models::Backbone& model, const torch::Tensor& a,
                       const torch::Tensor& classes, const std::string& cam_layer);

/// The reference implementation's way: one backward pass per image. Same
/// result as grad_cam; kept as the baseline for tests and benchmarks.
torch::Tensor grad_cam_per_image(models::Backbone& model, const torch::Tensor& a,
                                 const torch::Tensor& classes, const std::string& cam_layer);

/// The CAM fsa uses: analytic_cam if the head is pooling + linear, else grad_cam.
torch::Tensor class_activation_maps(models::Backbone& model, const torch::Tensor& a,
                                    const torch::Tensor& classes, const std::string& cam_layer);

}  // namespace fsa::cam
