// Sampler class probabilities by hand, and class frequencies over many draws.
#include "fsa/data/sampler.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace fsa::data {
namespace {

const std::vector<int64_t> kCounts{900, 90, 9, 1};  // 1,000 images

torch::Tensor labels_of(const std::vector<int64_t>& counts) {
  std::vector<int64_t> y;
  for (size_t c = 0; c < counts.size(); ++c) y.insert(y.end(), size_t(counts[c]), int64_t(c));
  return torch::tensor(y, torch::kInt64);
}

TEST(Sampler, ClassProbabilitiesByHand) {
  auto p = sampler_class_probabilities("class_balanced", kCounts, 0, 10);
  for (int c = 0; c < 4; ++c) EXPECT_NEAR(p[c].item<double>(), 0.25, 1e-12);
  p = sampler_class_probabilities("instance_balanced", kCounts, 0, 10);
  EXPECT_NEAR(p[1].item<double>(), 0.09, 1e-12);
  // q = 1/2: √900, √90, √9, √1 = 30, 9.4868, 3, 1.
  const double root_sum = 30 + std::sqrt(90.0) + 3 + 1;
  p = sampler_class_probabilities("square_root", kCounts, 0, 10);
  EXPECT_NEAR(p[0].item<double>(), 30 / root_sum, 1e-12);
  EXPECT_NEAR(p[3].item<double>(), 1 / root_sum, 1e-12);
  // Progressive: instance-balanced at t = 0, half-way at t = T/2.
  p = sampler_class_probabilities("progressive", kCounts, 0, 10);
  EXPECT_NEAR(p[0].item<double>(), 0.9, 1e-12);
  p = sampler_class_probabilities("progressive", kCounts, 5, 10);
  EXPECT_NEAR(p[0].item<double>(), 0.5 * 0.9 + 0.5 * 0.25, 1e-12);
  EXPECT_NEAR(p[3].item<double>(), 0.5 * 0.001 + 0.5 * 0.25, 1e-12);
  EXPECT_THROW(sampler_class_probabilities("balanced", kCounts, 0, 10), std::invalid_argument);
  EXPECT_THROW(ClassSampler("balanced", labels_of(kCounts), 4, 10), std::invalid_argument);
  // A label outside the classes is named, not an out-of-range read.
  EXPECT_THROW(ClassSampler("class_balanced", torch::tensor({0, 5}), 3, 1),
               std::invalid_argument);
}

TEST(Sampler, InstanceBalancedIsTheSamePermutationAsBefore) {
  const ClassSampler s("instance_balanced", labels_of(kCounts), 4, 10);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  auto same = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto order = s.epoch_indices(0, gen);
  EXPECT_TRUE(order.equal(torch::randperm(1000, same, torch::kInt64)));
}

// Over 200 epochs of 1,000 draws each class's share is within 4 standard
// errors of its probability (binomial: √(p(1−p)/n)), and every draw is an
// image of the class it stands for.
void expect_frequencies(const std::string& name, int64_t epoch, int64_t epochs) {
  const auto labels = labels_of(kCounts);
  const ClassSampler s(name, labels, 4, epochs);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  std::vector<double> seen(4, 0);
  const int rounds = 200;
  for (int r = 0; r < rounds; ++r) {
    const auto idx = s.epoch_indices(epoch, gen);
    ASSERT_EQ(idx.size(0), 1000);
    const auto y = labels.index_select(0, idx);
    for (int c = 0; c < 4; ++c) seen[size_t(c)] += y.eq(c).sum().item<double>();
  }
  const auto p = sampler_class_probabilities(name, kCounts, epoch, epochs);
  const double n = 1000.0 * rounds;
  for (int c = 0; c < 4; ++c) {
    const double pc = p[c].item<double>();
    EXPECT_NEAR(seen[size_t(c)] / n, pc, 4 * std::sqrt(pc * (1 - pc) / n))
        << name << " class " << c;
  }
}

TEST(Sampler, ClassFrequenciesOverManyDraws) {
  expect_frequencies("class_balanced", 0, 10);
  expect_frequencies("square_root", 0, 10);
  expect_frequencies("progressive", 7, 10);
}

TEST(Sampler, ClassBalancedReachesEveryImageOfARareClass) {
  // Uniform within a class: the 9 images of class 2 are all drawn, about equally.
  const auto labels = labels_of(kCounts);
  const ClassSampler s("class_balanced", labels, 4, 1);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto hits = torch::zeros({1000}, torch::kInt64);
  for (int r = 0; r < 100; ++r) hits += torch::bincount(s.epoch_indices(0, gen), {}, 1000);
  // 100 epochs × 250 draws of class 2 ≈ 2,778 per image.
  for (int64_t j = 990; j < 999; ++j) {
    EXPECT_NEAR(hits[j].item<double>() / (100 * 250.0 / 9), 1.0, 0.1) << "image " << j;
  }
}

}  // namespace
}  // namespace fsa::data
