#include "fsa/models/imagenet_resnet.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>

#include "fsa/models/summary.h"

namespace fsa::models {
namespace {

struct Arch {
  bool bottleneck;
  std::vector<int64_t> blocks;
};

Arch arch_of(int64_t depth) {
  // He et al. 2016, Table 1 (ResNet-10: the long-tail literature's [1,1,1,1]).
  switch (depth) {
    case 10:
      return {false, {1, 1, 1, 1}};
    case 18:
      return {false, {2, 2, 2, 2}};
    case 34:
      return {false, {3, 4, 6, 3}};
    case 50:
      return {true, {3, 4, 6, 3}};
    case 101:
      return {true, {3, 4, 23, 3}};
    default:
      return {true, {3, 8, 36, 3}};
  }
}

bool has_downsample(const Arch& a, int stage, int64_t block) {
  return block == 0 && (stage > 0 || a.bottleneck);
}

/// torchvision's state-dict keys, generated from the architecture.
void expected_keys(int64_t depth, std::set<std::string>* params, std::set<std::string>* buffers) {
  const auto a = arch_of(depth);
  auto bn = [&](const std::string& p) {
    params->insert(p + ".weight");
    params->insert(p + ".bias");
    for (const auto* b : {".running_mean", ".running_var", ".num_batches_tracked"}) {
      buffers->insert(p + b);
    }
  };
  params->insert("conv1.weight");
  bn("bn1");
  for (int s = 0; s < 4; ++s) {
    for (int64_t b = 0; b < a.blocks[s]; ++b) {
      const auto prefix = "layer" + std::to_string(s + 1) + "." + std::to_string(b) + ".";
      for (int c = 1; c <= (a.bottleneck ? 3 : 2); ++c) {
        params->insert(prefix + "conv" + std::to_string(c) + ".weight");
        bn(prefix + "bn" + std::to_string(c));
      }
      if (has_downsample(a, s, b)) {
        params->insert(prefix + "downsample.0.weight");
        bn(prefix + "downsample.1");
      }
    }
  }
  params->insert("fc.weight");
  params->insert("fc.bias");
}

/// Parameters and MACs at 224×224 counted from the architecture by hand.
std::pair<int64_t, int64_t> expected_cost(int64_t depth, int64_t classes) {
  const auto a = arch_of(depth);
  const int64_t e = a.bottleneck ? 4 : 1;
  int64_t params = 7 * 7 * 3 * 64 + 2 * 64, macs = 7 * 7 * 3 * 64 * 112 * 112;
  auto conv = [&](int64_t k, int64_t in, int64_t out, int64_t hw) {
    params += k * k * in * out + 2 * out;  // + its BatchNorm
    macs += k * k * in * out * hw * hw;
  };
  int64_t in = 64, hw = 56;
  const int64_t planes[] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) {
    for (int64_t b = 0; b < a.blocks[s]; ++b) {
      const int64_t out_hw = (b == 0 && s > 0) ? hw / 2 : hw;
      const int64_t p = planes[s];
      if (a.bottleneck) {
        conv(1, in, p, hw);
        conv(3, p, p, out_hw);
        conv(1, p, p * e, out_hw);
      } else {
        conv(3, in, p, out_hw);
        conv(3, p, p, out_hw);
      }
      if (has_downsample(a, s, b)) conv(1, in, p * e, out_hw);
      in = p * e;
      hw = out_hw;
    }
  }
  params += in * classes + classes;
  macs += in * classes;
  return {params, macs};
}

TEST(ImageNetResNet, ParameterCountsMatchTorchvision) {
  // torchvision.models.resnetNN(num_classes=1000): sum(p.numel() for p in parameters()).
  EXPECT_EQ(count_parameters(*make_model("resnet18", 1000)), 11689512);
  EXPECT_EQ(count_parameters(*make_model("resnet34", 1000)), 21797672);
  EXPECT_EQ(count_parameters(*make_model("resnet50", 1000)), 25557032);
  EXPECT_EQ(count_parameters(*make_model("resnet101", 1000)), 44549160);
  EXPECT_EQ(count_parameters(*make_model("resnet152", 1000)), 60192808);
  // ResNet-10 by hand: stem 9,408 + 128; layer1 73,728 + 256; layer2 221,184 +
  // 512 + projection 8,192 + 256; layer3 884,736 + 1,024 + 32,768 + 512;
  // layer4 3,538,944 + 2,048 + 131,072 + 1,024; fc 512,000 + 1,000.
  EXPECT_EQ(count_parameters(*make_model("resnet10", 1000)), 5418792);
  for (int64_t depth : {10, 18, 34, 50, 101, 152}) {
    for (int64_t classes : {1000, 365}) {
      EXPECT_EQ(count_parameters(*make_model("resnet" + std::to_string(depth), classes)),
                expected_cost(depth, classes).first)
          << depth << " " << classes;
    }
  }
}

TEST(ImageNetResNet, StateDictKeysAreTorchvisions) {
  for (int64_t depth : {10, 18, 34, 50, 101, 152}) {
    auto model = make_model("resnet" + std::to_string(depth), 1000);
    std::set<std::string> params, buffers, want_params, want_buffers;
    for (const auto& kv : model->named_parameters()) params.insert(kv.key());
    for (const auto& kv : model->named_buffers()) buffers.insert(kv.key());
    expected_keys(depth, &want_params, &want_buffers);
    EXPECT_EQ(params, want_params) << depth;
    EXPECT_EQ(buffers, want_buffers) << depth;
  }
  auto model = make_model("resnet50", 10);
  auto p = model->named_parameters();
  EXPECT_EQ(p["layer1.0.downsample.0.weight"].sizes(), torch::IntArrayRef({256, 64, 1, 1}));
  EXPECT_EQ(p["layer2.0.conv2.weight"].sizes(), torch::IntArrayRef({128, 128, 3, 3}));
  EXPECT_EQ(model->named_buffers()["layer4.0.downsample.1.running_var"].sizes(),
            torch::IntArrayRef({2048}));
}

TEST(ImageNetResNet, ShapesAndCamLayers) {
  torch::manual_seed(0);
  auto model = make_model("resnet10", 7);
  model->eval();
  EXPECT_EQ(model->input_size(), 224);
  EXPECT_EQ(model->classifier_name(), "fc");
  auto x = torch::randn({2, 3, 224, 224});
  auto a4 = model->features(x, "layer4");
  EXPECT_EQ(a4.sizes(), torch::IntArrayRef({2, 512, 7, 7}));
  auto a3 = model->features(x, "layer3");
  EXPECT_EQ(a3.sizes(), torch::IntArrayRef({2, 256, 14, 14}));
  auto y = model->forward(x);
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({2, 7}));
  EXPECT_TRUE(torch::allclose(model->head(a4, "layer4"), y, 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(model->head(a3, "layer3"), y, 1e-4, 1e-4));
  EXPECT_TRUE(model->head_is_linear("layer4"));
  EXPECT_FALSE(model->head_is_linear("layer3"));
  EXPECT_EQ(model->channels_at("layer4"), 512);
  EXPECT_EQ(make_model("resnet50", 3)->channels_at("layer4"), 2048);
  EXPECT_EQ(model->head_parameters("layer4").size(), 2u);
  EXPECT_GT(model->head_parameters("layer3").size(), 2u);
  // Smaller inputs work too (ImageNet-LT's reduced 112-pixel recipe).
  EXPECT_EQ(model->features(torch::randn({1, 3, 112, 112}), "layer4").sizes(),
            torch::IntArrayRef({1, 512, 4, 4}));
}

TEST(ImageNetResNet, InitialisationAsTorchvision) {
  torch::manual_seed(1);
  auto model = make_model("resnet18", 1000);
  auto p = model->named_parameters();
  // Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (C_out·K·K)).
  const auto w = p["layer3.1.conv2.weight"];  // [256, 256, 3, 3]
  EXPECT_NEAR(w.std().item<double>(), std::sqrt(2.0 / (256 * 9)), 0.002);
  EXPECT_NEAR(w.mean().item<double>(), 0.0, 0.001);
  EXPECT_TRUE(torch::equal(p["layer2.0.bn1.weight"], torch::ones({128})));
  EXPECT_TRUE(torch::equal(p["bn1.bias"], torch::zeros({64})));
  // fc: PyTorch's default, U(±1/sqrt(in)) for weight and bias.
  EXPECT_LE(p["fc.weight"].abs().max().item<double>(), 1.0 / std::sqrt(512.0) + 1e-6);
  EXPECT_GT(p["fc.weight"].std().item<double>(), 0.0);
}

TEST(ImageNetResNet, NamesDoNotClashWithCifarModels) {
  const auto names = model_names();
  const std::set<std::string> unique(names.begin(), names.end());
  EXPECT_EQ(unique.size(), names.size());
  EXPECT_EQ(unique.size(), 11u);
  EXPECT_EQ(make_model("resnet20", 10)->input_size(), 32);
  EXPECT_EQ(make_model("resnet18", 10)->input_size(), 224);
  EXPECT_THROW(make_model("resnet19", 10), std::invalid_argument);
  EXPECT_THROW(ImageNetResNet(26, 10), std::invalid_argument);
}

TEST(ModelSummary, MacsMatchHandCountAndTorchvisionTable) {
  // torchvision's model table, GFLOPS (= GMACs of convolutions and fc) at 224.
  const std::vector<std::pair<int64_t, double>> published{
      {18, 1.81}, {34, 3.66}, {50, 4.09}, {101, 7.80}, {152, 11.51}};
  EXPECT_EQ(count_macs(*make_model("resnet18", 1000), 224, 224), 1814073344);
  for (const auto& [depth, gmacs] : published) {
    auto model = make_model("resnet" + std::to_string(depth), 1000);
    const auto macs = count_macs(*model, 224, 224);
    EXPECT_EQ(macs, expected_cost(depth, 1000).second) << depth;
    EXPECT_NEAR(double(macs) / 1e9, gmacs, 0.006) << depth;
  }
  EXPECT_EQ(count_macs(*make_model("resnet10", 1000), 224, 224), expected_cost(10, 1000).second);
  // CIFAR ResNet-20 at 32×32: 442,368 + 14,155,776 + 2 × 12,976,128 + 640.
  EXPECT_EQ(count_macs(*make_model("resnet20", 10), 32, 32), 40551040);
}

TEST(ModelSummary, LayersShapesAndParameters) {
  auto model = make_model("resnet18", 1000);
  model->train();
  const auto s = summarize(*model, 224, 224);
  EXPECT_TRUE(model->is_training());  // restored
  ASSERT_EQ(s.layers.size(), 1u + 8u + 2u);
  EXPECT_EQ(s.layers.front().name, "stem");
  EXPECT_EQ(s.layers.front().output_shape, (std::vector<int64_t>{64, 56, 56}));
  EXPECT_EQ(s.layers.front().parameters, 9408 + 128);
  EXPECT_EQ(s.layers.front().macs, 118013952);
  EXPECT_EQ(s.layers[3].name, "layer2.0");
  EXPECT_EQ(s.layers[3].output_shape, (std::vector<int64_t>{128, 28, 28}));
  EXPECT_EQ(s.layers[9].name, "avgpool");
  EXPECT_EQ(s.layers[9].output_shape, (std::vector<int64_t>{512}));
  EXPECT_EQ(s.layers.back().name, "fc");
  EXPECT_EQ(s.layers.back().macs, 512000);
  EXPECT_EQ(s.layers.back().parameters, 513000);
  EXPECT_EQ(s.parameters, 11689512);
  int64_t sum = 0;
  for (const auto& l : s.layers) sum += l.parameters;
  EXPECT_EQ(sum, s.parameters);
  const auto text = format_summary(s);
  EXPECT_NE(text.find("11,689,512"), std::string::npos) << text;
  EXPECT_NE(text.find("1,814,073,344"), std::string::npos) << text;
  EXPECT_THROW(summarize(*model, 0, 224), std::invalid_argument);
}

}  // namespace
}  // namespace fsa::models
