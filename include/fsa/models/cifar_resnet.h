// CIFAR ResNets (He et al. 2016, §4.2) with option-A (parameter-free)
// shortcuts and Kaiming-normal initialisation, as in the long-tail
// literature's akamaster/pytorch_resnet_cifar10 (LDAM-DRW, FSA reference).
#pragma once

#include <torch/nn/modules/conv.h>

#include "fsa/models/backbone.h"
#include "fsa/models/batch_norm.h"

namespace fsa::models {

/// Two 3×3 convolutions with BatchNorm; the shortcut subsamples by stride and
/// zero-pads channels (option A) when the shape changes.
class CifarBasicBlockImpl : public torch::nn::Module {
 public:
  CifarBasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr};
  int64_t stride_, pad_channels_;
};
TORCH_MODULE(CifarBasicBlock);

/// ResNet-(6n+2) for 32×32 inputs: 16/32/64 channels in layer1..3, feature
/// map at layer3 of [N, 64, 8, 8] for 32×32 images. Parameter names:
/// conv1, bn1, layer{1,2,3}.{i}.{conv,bn}{1,2}, linear.
class CifarResNet : public Backbone {
 public:
  /// depth ∈ {20, 32, 44, 56, 110}; throws std::invalid_argument otherwise.
  CifarResNet(int64_t depth, int64_t num_classes);

 protected:
  torch::Tensor stem(const torch::Tensor& x) override;

 private:
  torch::nn::Conv2d conv1_{nullptr};
  BatchNorm2d bn1_{nullptr};
};

}  // namespace fsa::models
