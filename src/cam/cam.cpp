#include "fsa/cam/cam.h"

#include <torch/autograd.h>

namespace fsa::cam {

torch::Tensor normalize_maps(const torch::Tensor& maps) {
  const auto n = maps.size(0);
  auto flat = maps.reshape({n, -1});
  auto lo = std::get<0>(flat.min(/*dim=*/1, /*keepdim=*/true));
  auto hi = std::get<0>(flat.max(/*dim=*/1, /*keepdim=*/true));
  auto range = hi - lo;
  auto flat_map = range <= 0;
  // Divide by 1 where the map is flat so no NaN ever appears, then zero it.
  auto normalised = (flat - lo) / torch::where(flat_map, torch::ones_like(range), range);
  normalised = normalised.masked_fill(flat_map, 0.0);
  return normalised.view(maps.sizes());
}

torch::Tensor analytic_cam(const torch::Tensor& a, const torch::Tensor& weight,
                           const torch::Tensor& classes) {
  auto w = weight.index_select(0, classes.to(weight.device()));  // [N, K]
  auto m = torch::bmm(w.unsqueeze(1), a.flatten(2)).squeeze(1);  // [N, h*w]
  return normalize_maps(torch::relu(m).view({a.size(0), a.size(2), a.size(3)}));
}

namespace {

torch::Tensor weighted_maps(const torch::Tensor& a, const torch::Tensor& grad) {
  auto alpha = grad.mean({2, 3}, /*keepdim=*/true);  // [N, K, 1, 1]
  return normalize_maps(torch::relu((alpha * a).sum(1)));
}

}  // namespace

torch::Tensor grad_cam(models::Backbone& model, const torch::Tensor& a,
                       const torch::Tensor& classes, const std::string& cam_layer) {
  torch::AutoGradMode enable(true);
  auto leaf = a.detach().requires_grad_(true);
  auto logits = model.head(leaf, cam_layer);
  auto picked = logits.gather(1, classes.to(logits.device()).view({-1, 1})).sum();
  auto grad = torch::autograd::grad({picked}, {leaf})[0];
  return weighted_maps(a.detach(), grad);
}

torch::Tensor grad_cam_per_image(models::Backbone& model, const torch::Tensor& a,
                                 const torch::Tensor& classes, const std::string& cam_layer) {
  torch::AutoGradMode enable(true);
  std::vector<torch::Tensor> maps;
  auto cls = classes.to(torch::kCPU);
  for (int64_t i = 0; i < a.size(0); ++i) {
    auto leaf = a.narrow(0, i, 1).detach().requires_grad_(true);
    auto logits = model.head(leaf, cam_layer);
    auto grad = torch::autograd::grad({logits[0][cls[i].item<int64_t>()]}, {leaf})[0];
    maps.push_back(weighted_maps(leaf.detach(), grad));
  }
  return torch::cat(maps, 0);
}

torch::Tensor class_activation_maps(models::Backbone& model, const torch::Tensor& a,
                                    const torch::Tensor& classes, const std::string& cam_layer) {
  if (model.head_is_linear(cam_layer)) {
    torch::NoGradGuard no_grad;
    return analytic_cam(a, model.classifier()->weight, classes);
  }
  return grad_cam(model, a, classes, cam_layer);
}

}  // namespace fsa::cam
