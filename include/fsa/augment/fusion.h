// Feature-space augmentation (METHOD.md, Phase III step 2): the class-specific
// region of a tail image's feature map fused, under a random spatial mask,
// with the class-generic region of a confusing-class image's feature map.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

namespace fsa::augment {

struct FusedMaps {
  torch::Tensor maps;    ///< float [G·Na, K, h, w], group-major
  torch::Tensor labels;  ///< int64 [G·Na]: the class of the tail image each came from
  torch::Tensor masks;   ///< bool [G·Na, h, w]: B, true where the tail's part is kept
};

/// For each tail map g and each of its Na confusing maps a:
///   F_s = A_t[g]·[M_t[g] > ts],  F_g = A_c[g,a]·[M_c[g,a] < tg],
///   γ ~ U(0,1), B(i,j) = [U(i,j) > γ], fused = B·F_s + (1 − B)·F_g,
/// labelled tail_labels[g]. Masks broadcast over channels.
/// tail_maps: float [G, K, h, w]; tail_cams: float [G, h, w] in [0, 1];
/// tail_labels: int64 [G]; other_maps: float [G, Na, K, h, w];
/// other_cams: float [G, Na, h, w]. γ and U are drawn from `gen` (CPU).
/// Throws std::invalid_argument on inconsistent shapes.
FusedMaps fuse_feature_maps(const torch::Tensor& tail_maps, const torch::Tensor& tail_cams,
                            const torch::Tensor& tail_labels, const torch::Tensor& other_maps,
                            const torch::Tensor& other_cams, double ts, double tg,
                            at::Generator gen);

/// The masks B of fuse_feature_maps for G groups of Na maps of h × w, drawn
/// from `gen` (CPU) as it draws them (all γ, then all U): bool [G, Na, h, w]
/// on the CPU. A data-parallel rank draws the whole batch's and keeps its
/// groups' rows.
torch::Tensor draw_fusion_masks(int64_t groups, int64_t na, int64_t h, int64_t w,
                                at::Generator gen);

/// The deterministic core: the same fusion with the masks B given
/// (bool [G, Na, h, w]).
FusedMaps fuse_with_masks(const torch::Tensor& tail_maps, const torch::Tensor& tail_cams,
                          const torch::Tensor& tail_labels, const torch::Tensor& other_maps,
                          const torch::Tensor& other_cams, const torch::Tensor& masks,
                          double ts, double tg);

}  // namespace fsa::augment
