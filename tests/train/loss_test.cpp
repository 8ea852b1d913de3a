// Each loss against values computed by hand in float64 on a tiny batch.
#include "fsa/train/loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace fsa::train {
namespace {

// Two images, three classes: logits and targets used throughout.
const std::vector<std::vector<double>> kLogits{{2.0, 0.5, -1.0}, {0.1, 0.3, 1.2}};
const std::vector<int64_t> kTargets{0, 1};
const std::vector<int64_t> kCounts{16, 4, 1};

torch::Tensor logits() {
  return torch::tensor({2.0, 0.5, -1.0, 0.1, 0.3, 1.2}, torch::kFloat32).view({2, 3});
}
torch::Tensor targets() { return torch::tensor(kTargets, torch::kInt64); }

/// −log softmax(z)_y in float64, by hand.
double nll(const std::vector<double>& z, int64_t y) {
  double sum = 0;
  for (double v : z) sum += std::exp(v);
  return -(z[size_t(y)] - std::log(sum));
}

io::LossConfig loss_named(const std::string& name) {
  io::LossConfig c;
  c.name = name;
  return c;
}

double value(const Criterion& l, int64_t epoch = 0) {
  return l(logits(), targets(), epoch).item<double>();
}

TEST(Loss, ClassBalancedWeightsFromBetaAndCounts) {
  // β = 0.5: w_c = 0.5 / (1 − 0.5^n_c) = 0.5/(1 − 2^-16), 0.5/(15/16), 1; then Σ w = 3.
  const double raw[] = {0.5 / (1 - std::pow(0.5, 16)), 0.5 / (1 - 0.0625), 0.5 / 0.5};
  const double sum = raw[0] + raw[1] + raw[2];
  const auto w = class_balanced_weights(kCounts, 0.5);
  ASSERT_EQ(w.sizes(), torch::IntArrayRef({3}));
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(w[c].item<double>(), raw[c] / sum * 3, 1e-6);
  // β = 0 weighs every class 1; β → 1 approaches inverse frequency.
  EXPECT_TRUE(torch::allclose(class_balanced_weights(kCounts, 0.0), torch::ones({3})));
  const auto inv = class_balanced_weights(kCounts, 0.999999);
  EXPECT_NEAR(inv[2].item<double>() / inv[0].item<double>(), 16.0, 1e-3);
  EXPECT_THROW(class_balanced_weights(kCounts, 1.0), std::invalid_argument);
  EXPECT_THROW(class_balanced_weights({3, 0}, 0.9), std::invalid_argument);
}

TEST(Loss, CrossEntropyAndItsWeightedMean) {
  const double l0 = nll(kLogits[0], 0), l1 = nll(kLogits[1], 1);
  EXPECT_NEAR(value(Criterion(loss_named("cross_entropy"), kCounts, torch::kCPU)), (l0 + l1) / 2,
              1e-6);
  auto cfg = loss_named("cross_entropy");
  cfg.weighting = "class_balanced";
  cfg.beta = 0.5;
  const auto w = class_balanced_weights(kCounts, 0.5);
  const double w0 = w[0].item<double>(), w1 = w[1].item<double>();
  // PyTorch's weighted mean: Σ w_y l / Σ w_y.
  EXPECT_NEAR(value(Criterion(cfg, kCounts, torch::kCPU)), (w0 * l0 + w1 * l1) / (w0 + w1), 1e-6);
}

TEST(Loss, FocalAtGammaZeroIsCrossEntropyAndByHandAtTwo) {
  auto cfg = loss_named("focal");
  cfg.gamma = 0;
  EXPECT_NEAR(value(Criterion(cfg, kCounts, torch::kCPU)),
              value(Criterion(loss_named("cross_entropy"), kCounts, torch::kCPU)), 1e-6);
  cfg.gamma = 2;
  double expected = 0;
  for (int i = 0; i < 2; ++i) {
    const double l = nll(kLogits[size_t(i)], kTargets[size_t(i)]);
    expected += std::pow(1 - std::exp(-l), 2) * l / 2;
  }
  EXPECT_NEAR(value(Criterion(cfg, kCounts, torch::kCPU)), expected, 1e-6);
  // Class-balanced focal: the plain mean of w_y·(1 − p)^γ·l (Cao et al.'s FocalLoss).
  cfg.weighting = "class_balanced";
  cfg.beta = 0.5;
  const auto w = class_balanced_weights(kCounts, 0.5);
  double weighted = 0;
  for (int i = 0; i < 2; ++i) {
    const double l = nll(kLogits[size_t(i)], kTargets[size_t(i)]);
    weighted += w[kTargets[size_t(i)]].item<double>() * std::pow(1 - std::exp(-l), 2) * l / 2;
  }
  EXPECT_NEAR(value(Criterion(cfg, kCounts, torch::kCPU)), weighted, 1e-6);
}

TEST(Loss, LdamMarginsAndScale) {
  // Δ_c ∝ n_c^(−1/4): 1/2, 1/√2, 1 for 16, 4, 1; the largest is max_margin.
  const auto m = ldam_margins(kCounts, 0.5);
  EXPECT_NEAR(m[0].item<double>(), 0.25, 1e-7);
  EXPECT_NEAR(m[1].item<double>(), 0.5 / std::sqrt(2.0), 1e-7);
  EXPECT_NEAR(m[2].item<double>(), 0.5, 1e-7);
  auto cfg = loss_named("ldam");
  cfg.max_margin = 0.5;
  cfg.scale = 30;
  // Only the target logit drops by its class's margin, then every logit is scaled by s.
  auto z0 = kLogits[0], z1 = kLogits[1];
  z0[0] -= 0.25;
  z1[1] -= 0.5 / std::sqrt(2.0);
  for (auto& v : z0) v *= 30;
  for (auto& v : z1) v *= 30;
  EXPECT_NEAR(value(Criterion(cfg, kCounts, torch::kCPU)), (nll(z0, 0) + nll(z1, 1)) / 2, 1e-4);
}

TEST(Loss, BalancedSoftmaxIsCrossEntropyOnLogitsPlusLogPrior) {
  double expected = 0;
  for (int i = 0; i < 2; ++i) {
    auto z = kLogits[size_t(i)];
    for (size_t c = 0; c < 3; ++c) z[c] += std::log(double(kCounts[c]) / 21.0);
    expected += nll(z, kTargets[size_t(i)]) / 2;
  }
  EXPECT_NEAR(value(Criterion(loss_named("balanced_softmax"), kCounts, torch::kCPU)), expected,
              1e-6);
}

TEST(Loss, DeferredReweightingSwitchesAtItsEpoch) {
  auto cfg = loss_named("ldam");
  cfg.weighting = "drw";
  cfg.drw_epoch = 160;
  cfg.beta = 0.9999;
  const Criterion l(cfg, kCounts, torch::kCPU);
  EXPECT_FALSE(l.weights_at(0).defined());
  EXPECT_FALSE(l.weights_at(159).defined());
  ASSERT_TRUE(l.weights_at(160).defined());
  EXPECT_TRUE(torch::allclose(l.weights_at(199), class_balanced_weights(kCounts, 0.9999)));
  auto plain = cfg;
  plain.weighting = "none";
  EXPECT_DOUBLE_EQ(value(l, 159), value(Criterion(plain, kCounts, torch::kCPU), 159));
  EXPECT_NE(value(l, 160), value(l, 159));
}

TEST(Loss, PostHocLogitAdjustment) {
  const auto log_prior = log_class_prior(kCounts);
  EXPECT_NEAR(log_prior[2].item<double>(), std::log(1.0 / 21.0), 1e-6);
  const auto adjusted = adjust_logits(logits(), log_prior, 1.0);
  EXPECT_NEAR(adjusted[0][1].item<double>(), 0.5 - std::log(4.0 / 21.0), 1e-6);
  EXPECT_TRUE(adjust_logits(logits(), log_prior, 0.0).equal(logits()));
}

TEST(Loss, GradientsFlowThroughEveryLoss) {
  for (const auto* name : {"cross_entropy", "focal", "ldam", "balanced_softmax"}) {
    auto z = logits().requires_grad_(true);
    auto l = Criterion(loss_named(name), kCounts, torch::kCPU)(z, targets(), 0);
    l.backward();
    ASSERT_TRUE(z.grad().defined()) << name;
    EXPECT_GT(z.grad().abs().sum().item<double>(), 0) << name;
  }
}

}  // namespace
}  // namespace fsa::train
