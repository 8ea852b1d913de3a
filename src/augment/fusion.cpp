#include "fsa/augment/fusion.h"

#include <fmt/format.h>

#include <stdexcept>

namespace fsa::augment {

FusedMaps fuse_with_masks(const torch::Tensor& tail_maps, const torch::Tensor& tail_cams,
                          const torch::Tensor& tail_labels, const torch::Tensor& other_maps,
                          const torch::Tensor& other_cams, const torch::Tensor& masks,
                          double ts, double tg) {
  const auto g = tail_maps.size(0), k = tail_maps.size(1), h = tail_maps.size(2),
             w = tail_maps.size(3);
  if (other_maps.dim() != 5 || other_maps.size(0) != g || other_maps.size(2) != k ||
      other_maps.size(3) != h || other_maps.size(4) != w) {
    throw std::invalid_argument(fmt::format(
        "fuse_feature_maps: other_maps must be [G={}, Na, K={}, h={}, w={}]", g, k, h, w));
  }
  const auto na = other_maps.size(1);
  if (tail_cams.sizes() != torch::IntArrayRef({g, h, w}) ||
      other_cams.sizes() != torch::IntArrayRef({g, na, h, w}) ||
      masks.sizes() != torch::IntArrayRef({g, na, h, w}) || tail_labels.numel() != g) {
    throw std::invalid_argument("fuse_feature_maps: CAM, mask or label shapes do not match the maps");
  }
  auto specific = (tail_maps * (tail_cams > ts).unsqueeze(1)).unsqueeze(1);  // [G,1,K,h,w]
  auto generic = other_maps * (other_cams < tg).unsqueeze(2);                 // [G,Na,K,h,w]
  auto fused = torch::where(masks.unsqueeze(2), specific, generic);
  return FusedMaps{fused.reshape({g * na, k, h, w}),
                   tail_labels.view({g, 1}).expand({g, na}).reshape({g * na}),
                   masks.reshape({g * na, h, w})};
}

torch::Tensor draw_fusion_masks(int64_t groups, int64_t na, int64_t h, int64_t w,
                                at::Generator gen) {
  const auto gamma = torch::rand({groups, na, 1, 1}, gen);
  const auto u = torch::rand({groups, na, h, w}, gen);
  return u > gamma;
}

FusedMaps fuse_feature_maps(const torch::Tensor& tail_maps, const torch::Tensor& tail_cams,
                            const torch::Tensor& tail_labels, const torch::Tensor& other_maps,
                            const torch::Tensor& other_cams, double ts, double tg,
                            at::Generator gen) {
  const auto g = other_maps.size(0), na = other_maps.size(1), h = other_maps.size(3),
             w = other_maps.size(4);
  const auto masks = draw_fusion_masks(g, na, h, w, gen).to(tail_maps.device());
  return fuse_with_masks(tail_maps, tail_cams, tail_labels, other_maps, other_cams, masks, ts, tg);
}

}  // namespace fsa::augment
