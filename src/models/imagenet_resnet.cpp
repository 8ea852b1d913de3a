#include "fsa/models/imagenet_resnet.h"

#include <fmt/format.h>
#include <torch/nn/init.h>

#include <stdexcept>

namespace fsa::models {
namespace {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

/// torchvision's `_make_layer`: the first block carries the stride and, when
/// the shape changes, a projection shortcut.
template <typename Block>
torch::nn::Sequential make_stage(int64_t& in_planes, int64_t planes, int64_t blocks,
                                 int64_t stride) {
  constexpr int64_t e = Block::Impl::kExpansion;
  torch::nn::Sequential stage;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t s = b == 0 ? stride : 1;
    torch::nn::Sequential downsample{nullptr};
    if (b == 0 && (stride != 1 || in_planes != planes * e)) {
      downsample =
          torch::nn::Sequential(conv(in_planes, planes * e, 1, stride), BatchNorm2d(planes * e));
    }
    stage->push_back(Block(in_planes, planes, s, downsample));
    in_planes = planes * e;
  }
  return stage;
}

}  // namespace

BasicBlockImpl::BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride,
                               torch::nn::Sequential ds) {
  conv1 = register_module("conv1", conv(in_planes, planes, 3, stride));
  bn1 = register_module("bn1", BatchNorm2d(planes));
  conv2 = register_module("conv2", conv(planes, planes, 3, 1));
  bn2 = register_module("bn2", BatchNorm2d(planes));
  if (!ds.is_empty()) downsample = register_module("downsample", ds);
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& x) {
  auto out = torch::relu(bn1(conv1(x)));
  out = bn2(conv2(out));
  return torch::relu(out + (downsample.is_empty() ? x : downsample->forward(x)));
}

BottleneckImpl::BottleneckImpl(int64_t in_planes, int64_t planes, int64_t stride,
                               torch::nn::Sequential ds) {
  conv1 = register_module("conv1", conv(in_planes, planes, 1, 1));
  bn1 = register_module("bn1", BatchNorm2d(planes));
  conv2 = register_module("conv2", conv(planes, planes, 3, stride));
  bn2 = register_module("bn2", BatchNorm2d(planes));
  conv3 = register_module("conv3", conv(planes, planes * kExpansion, 1, 1));
  bn3 = register_module("bn3", BatchNorm2d(planes * kExpansion));
  if (!ds.is_empty()) downsample = register_module("downsample", ds);
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  auto out = torch::relu(bn1(conv1(x)));
  out = torch::relu(bn2(conv2(out)));
  out = bn3(conv3(out));
  return torch::relu(out + (downsample.is_empty() ? x : downsample->forward(x)));
}

ImageNetResNetSpec imagenet_resnet_spec(int64_t depth) {
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
    case 152:
      return {true, {3, 8, 36, 3}};
    default:
      throw std::invalid_argument(
          fmt::format("ImageNet ResNet depth must be 10, 18, 34, 50, 101 or 152, got {}", depth));
  }
}

ImageNetResNet::ImageNetResNet(int64_t depth, int64_t num_classes)
    : Backbone(fmt::format("resnet{}", depth), /*input_size=*/224) {
  const auto spec = imagenet_resnet_spec(depth);
  if (num_classes < 1) throw std::invalid_argument("ImageNetResNet: num_classes must be >= 1");
  conv1_ = register_module(
      "conv1",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
  bn1_ = register_module("bn1", BatchNorm2d(64));
  maxpool_ = register_module(
      "maxpool", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(3).stride(2).padding(1)));
  int64_t in_planes = 64;
  const int64_t planes[] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) {
    const int64_t stride = s == 0 ? 1 : 2;
    auto stage = spec.bottleneck
                     ? make_stage<Bottleneck>(in_planes, planes[s], spec.blocks[s], stride)
                     : make_stage<BasicBlock>(in_planes, planes[s], spec.blocks[s], stride);
    add_stage(fmt::format("layer{}", s + 1), stage, in_planes);
  }
  set_classifier("fc", torch::nn::Linear(in_planes, num_classes));
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* c = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(c->weight, /*a=*/0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = m->as<BatchNorm2d>()) {
      torch::nn::init::ones_(bn->weight);
      torch::nn::init::zeros_(bn->bias);
    }
  }
}

torch::Tensor ImageNetResNet::stem(const torch::Tensor& x) {
  return maxpool_(torch::relu(bn1_(conv1_(x))));
}

}  // namespace fsa::models
