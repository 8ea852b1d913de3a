#include "fsa/cam/cam.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace fsa::cam {
namespace {

/// Grad-CAM straight from its definition with autograd, in float64, one image
/// at a time: α_k = mean_ij ∂y_c/∂A_k(i,j), M = ReLU(Σ_k α_k A_k), min–max.
torch::Tensor reference_grad_cam(models::Backbone& model, const torch::Tensor& a,
                                 const torch::Tensor& classes, const std::string& layer) {
  model.to(torch::kFloat64);
  std::vector<torch::Tensor> out;
  for (int64_t n = 0; n < a.size(0); ++n) {
    auto leaf = a[n].unsqueeze(0).to(torch::kFloat64).detach().requires_grad_(true);
    auto y = model.head(leaf, layer)[0][classes[n].item<int64_t>()];
    y.backward();
    auto alpha = leaf.grad().mean({2, 3}, true);
    auto m = torch::relu((alpha * leaf.detach()).sum(1))[0];
    auto lo = m.min(), hi = m.max();
    out.push_back(hi.item<double>() > lo.item<double>() ? (m - lo) / (hi - lo)
                                                        : torch::zeros_like(m));
  }
  model.to(torch::kFloat32);
  return torch::stack(out).to(torch::kFloat32);
}

TEST(Cam, AnalyticEqualsAutogradGradCamAtLastLayer) {
  torch::manual_seed(3);
  auto model = models::make_model("resnet20", 10);
  model->eval();
  torch::Tensor a;
  {
    torch::NoGradGuard no_grad;
    a = model->features(torch::randn({6, 3, 32, 32}), "layer3");
  }
  auto classes = torch::tensor({0L, 3L, 9L, 4L, 4L, 1L});
  auto fast = class_activation_maps(*model, a, classes, "layer3");
  auto truth = reference_grad_cam(*model, a, classes, "layer3");
  EXPECT_LT((fast - truth).abs().max().item<double>(), 1e-5);
  EXPECT_LE(fast.max().item<float>(), 1.0f);
  EXPECT_GE(fast.min().item<float>(), 0.0f);
}

TEST(Cam, BatchedGradCamEqualsPerImageAtInnerLayer) {
  torch::manual_seed(4);
  auto model = models::make_model("resnet20", 10);
  model->eval();
  torch::Tensor a;
  {
    torch::NoGradGuard no_grad;
    a = model->features(torch::randn({5, 3, 32, 32}), "layer2");
  }
  auto classes = torch::tensor({2L, 2L, 7L, 0L, 5L});
  auto batched = class_activation_maps(*model, a, classes, "layer2");
  auto per_image = grad_cam_per_image(*model, a, classes, "layer2");
  auto truth = reference_grad_cam(*model, a, classes, "layer2");
  EXPECT_EQ(batched.sizes(), torch::IntArrayRef({5, 16, 16}));
  EXPECT_LT((batched - per_image).abs().max().item<double>(), 1e-5);
  EXPECT_LT((batched - truth).abs().max().item<double>(), 1e-4);
}

TEST(Cam, FlatMapGivesZerosNotNaN) {
  auto maps = torch::stack({torch::full({3, 3}, 2.5), torch::zeros({3, 3}),
                            torch::arange(9, torch::kFloat32).view({3, 3})});
  auto out = normalize_maps(maps);
  EXPECT_FALSE(out.isnan().any().item<bool>());
  EXPECT_TRUE(torch::equal(out[0], torch::zeros({3, 3})));
  EXPECT_TRUE(torch::equal(out[1], torch::zeros({3, 3})));
  EXPECT_NEAR(out[2][1][1].item<float>(), 4.0f / 8.0f, 1e-6);
  // A feature map the linear weights make all-negative: ReLU flattens it to 0.
  auto a = torch::ones({1, 2, 2, 2});
  auto w = torch::tensor({{-1.0f, -2.0f}});
  auto cam = analytic_cam(a, w, torch::tensor({0L}));
  EXPECT_TRUE(torch::equal(cam, torch::zeros({1, 2, 2})));
}

}  // namespace
}  // namespace fsa::cam
