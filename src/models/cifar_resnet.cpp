#include "fsa/models/cifar_resnet.h"

#include <fmt/format.h>
#include <torch/nn/init.h>

#include <stdexcept>

namespace fsa::models {
namespace {

torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

}  // namespace

CifarBasicBlockImpl::CifarBasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride)
    : stride_(stride), pad_channels_(in_planes != planes ? (planes - in_planes) / 2 : 0) {
  conv1 = register_module("conv1", conv3x3(in_planes, planes, stride));
  bn1 = register_module("bn1", BatchNorm2d(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes, 1));
  bn2 = register_module("bn2", BatchNorm2d(planes));
  if (in_planes + 2 * pad_channels_ != planes) {
    throw std::invalid_argument("option-A shortcut needs planes - in_planes to be even");
  }
}

torch::Tensor CifarBasicBlockImpl::forward(const torch::Tensor& x) {
  auto out = torch::relu(bn1(conv1(x)));
  out = bn2(conv2(out));
  torch::Tensor shortcut = x;
  if (stride_ != 1 || pad_channels_ != 0) {
    using torch::indexing::None;
    using torch::indexing::Slice;
    shortcut = x.index({Slice(), Slice(), Slice(None, None, stride_), Slice(None, None, stride_)});
    shortcut = torch::constant_pad_nd(shortcut, {0, 0, 0, 0, pad_channels_, pad_channels_}, 0);
  }
  return torch::relu(out + shortcut);
}

CifarResNet::CifarResNet(int64_t depth, int64_t num_classes)
    : Backbone(fmt::format("resnet{}", depth), /*input_size=*/32) {
  if (depth < 8 || (depth - 2) % 6 != 0) {
    throw std::invalid_argument(fmt::format("CIFAR ResNet depth must be 6n+2, got {}", depth));
  }
  const int64_t blocks = (depth - 2) / 6;
  conv1_ = register_module("conv1", conv3x3(3, 16, 1));
  bn1_ = register_module("bn1", BatchNorm2d(16));
  int64_t in_planes = 16;
  const int64_t planes[] = {16, 32, 64};
  for (int s = 0; s < 3; ++s) {
    torch::nn::Sequential stage;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      stage->push_back(CifarBasicBlock(in_planes, planes[s], stride));
      in_planes = planes[s];
    }
    add_stage(fmt::format("layer{}", s + 1), stage, planes[s]);
  }
  set_classifier("linear", torch::nn::Linear(64, num_classes));
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(conv->weight);
    } else if (auto* lin = m->as<torch::nn::Linear>()) {
      torch::nn::init::kaiming_normal_(lin->weight);
    }
  }
}

torch::Tensor CifarResNet::stem(const torch::Tensor& x) {
  return torch::relu(bn1_(conv1_(x)));
}

}  // namespace fsa::models
