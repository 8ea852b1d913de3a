#include "fsa/models/cifar_resnet.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace fsa::models {
namespace {

TEST(CifarResNet, ParameterCountsMatchReferenceImplementation) {
  // akamaster/pytorch_resnet_cifar10 counts (CONVENTIONS.md) at 10 / 100 classes.
  const std::vector<std::tuple<std::string, int64_t, int64_t>> expected{
      {"resnet20", 269722, 275572}, {"resnet32", 464154, 470004}, {"resnet44", 658586, 664436},
      {"resnet56", 853018, 858868}, {"resnet110", 1727962, 1733812}};
  for (const auto& [name, c10, c100] : expected) {
    EXPECT_EQ(count_parameters(*make_model(name, 10)), c10) << name;
    EXPECT_EQ(count_parameters(*make_model(name, 100)), c100) << name;
  }
}

TEST(CifarResNet, FeatureAndHeadComposeToForward) {
  torch::manual_seed(0);
  auto model = make_model("resnet20", 7);
  model->eval();
  auto x = torch::randn({2, 3, 32, 32});
  auto a3 = model->features(x, "layer3");
  EXPECT_EQ(a3.sizes(), torch::IntArrayRef({2, 64, 8, 8}));
  auto a2 = model->features(x, "layer2");
  EXPECT_EQ(a2.sizes(), torch::IntArrayRef({2, 32, 16, 16}));
  auto y = model->forward(x);
  EXPECT_TRUE(torch::allclose(model->head(a3, "layer3"), y, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(model->head(a2, "layer2"), y, 1e-5, 1e-5));
  EXPECT_TRUE(model->head_is_linear("layer3"));
  EXPECT_FALSE(model->head_is_linear("layer2"));
  EXPECT_THROW(model->features(x, "layer9"), std::invalid_argument);
  EXPECT_THROW(make_model("resnet33", 10), std::invalid_argument);
}

TEST(CifarResNet, ParameterNamesFollowTheReference) {
  auto model = make_model("resnet20", 10);
  auto params = model->named_parameters();
  for (const auto* key : {"conv1.weight", "bn1.weight", "layer1.0.conv1.weight",
                          "layer3.2.bn2.bias", "linear.weight", "linear.bias"}) {
    EXPECT_TRUE(params.contains(key)) << key;
  }
  // Head parameters at layer3: the linear layer only; at layer2: layer3 too.
  EXPECT_EQ(model->head_parameters("layer3").size(), 2u);
  EXPECT_GT(model->head_parameters("layer2").size(), 2u);
}

}  // namespace
}  // namespace fsa::models
