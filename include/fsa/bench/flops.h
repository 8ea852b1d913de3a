// Floating-point operations of a network, counted from the shapes of the
// layers a forward pass actually runs (issue 5, "the floor").
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <functional>

#include "fsa/models/backbone.h"

namespace fsa::bench {

/// Multiply-adds counted as two operations, of the convolutions and linear
/// layers that run while `fn` runs on the calling thread:
///   convolution: 2·(Cin/groups)·Kh·Kw · (N·Cout·Hout·Wout)   (2·K·K·Cin·Cout·Hout·Wout per image)
///   linear:      2·in · (N·out)                              (2·in·out per row)
/// Everything else (BatchNorm, ReLU, additions, pooling, padding) is left
/// out, as is conventional. Shapes are read from each aten::convolution and
/// aten::linear call (RecordFunction), so any architecture is counted as it
/// runs, including stages that are skipped or repeated.
int64_t count_flops(const std::function<void()>& fn);

/// FLOPs of one forward pass of `model` for one 3×height×width image (no
/// gradient, evaluation mode; the model's training mode is restored). Its
/// device is the model's. Training costs about 3× this (forward, gradient with
/// respect to activations, gradient with respect to weights).
int64_t forward_flops_per_image(models::Backbone& model, int64_t height = 32,
                                int64_t width = 32);

}  // namespace fsa::bench
