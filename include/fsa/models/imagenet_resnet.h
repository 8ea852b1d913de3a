// ImageNet ResNets (He et al. 2016, Table 1) as torchvision builds them:
// conv1 7×7/2, bn1, ReLU, max-pool 3×3/2, layer1..layer4, global average
// pooling, fc; stride on the 3×3 convolution of a bottleneck (ResNet v1.5);
// projection shortcuts (1×1 convolution + BatchNorm) where the shape changes.
// Parameter and buffer names equal torchvision's state-dict keys, so weights
// carry over: conv1.weight, bn1.running_mean, layer1.0.conv1.weight,
// layer2.0.downsample.0.weight, layer2.0.downsample.1.running_var, fc.weight.
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>

#include <array>

#include "fsa/models/backbone.h"
#include "fsa/models/batch_norm.h"

namespace fsa::models {

/// Two 3×3 convolutions (expansion 1); torchvision's BasicBlock.
class BasicBlockImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;
  /// `downsample`: the projection shortcut, or an empty (null) Sequential.
  BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride,
                 torch::nn::Sequential downsample);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

/// 1×1 reduce, 3×3 (carrying the stride), 1×1 expand ×4; torchvision's
/// Bottleneck.
class BottleneckImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  BottleneckImpl(int64_t in_planes, int64_t planes, int64_t stride,
                 torch::nn::Sequential downsample);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

/// Block type and blocks per stage of an ImageNet ResNet.
struct ImageNetResNetSpec {
  bool bottleneck = false;
  std::array<int64_t, 4> blocks{};
};

/// The depths fsa builds: 10 (basic [1,1,1,1], the long-tail literature's
/// ImageNet-LT network), 18 and 34 (basic), 50, 101 and 152 (bottleneck).
/// Throws std::invalid_argument for any other depth.
ImageNetResNetSpec imagenet_resnet_spec(int64_t depth);

/// ResNet-`depth` for 224×224 inputs: feature maps [N, 64·e, 56, 56] after
/// layer1 down to [N, 512·e, 7, 7] after layer4 (e = 1 for basic blocks, 4
/// for bottlenecks). The stem is conv1/bn1/relu/maxpool, the stages
/// layer1..layer4 (either layer3 or layer4 can be the CAM layer) and the
/// classifier is registered as "fc". Initialisation as torchvision:
/// Kaiming-normal (fan_out, ReLU) convolutions, BatchNorm weight 1 and bias 0,
/// LibTorch's default (= PyTorch's) for fc.
class ImageNetResNet : public Backbone {
 public:
  /// Throws std::invalid_argument for an unknown depth or num_classes < 1.
  ImageNetResNet(int64_t depth, int64_t num_classes);

 protected:
  torch::Tensor stem(const torch::Tensor& x) override;

 private:
  torch::nn::Conv2d conv1_{nullptr};
  BatchNorm2d bn1_{nullptr};
  torch::nn::MaxPool2d maxpool_{nullptr};
};

}  // namespace fsa::models
