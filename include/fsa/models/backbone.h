// A ResNet seen as the method sees it (METHOD.md, Notation): a feature
// sub-network f (stem and stages up to and including the CAM layer) and a
// classifier head h (the remaining stages, global average pooling, linear).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace fsa::models {

/// Base of every network fsa trains. Subclasses register a stem and stages
/// named "layer1", "layer2", ... and the final linear layer.
class Backbone : public torch::nn::Module {
 public:
  /// Logits float [N, C] of images float [N, 3, H, W].
  torch::Tensor forward(const torch::Tensor& x);

  /// Feature map A = f(x) at `cam_layer` ("layer3", ...): float [N, K, h, w].
  /// Throws std::invalid_argument for an unknown layer name.
  torch::Tensor features(const torch::Tensor& x, const std::string& cam_layer);

  /// Logits of feature maps taken at `cam_layer`: h(A), float [N, C].
  torch::Tensor head(const torch::Tensor& a, const std::string& cam_layer);

  /// True when `cam_layer` is the last stage and the classifier is linear, so
  /// that h is pooling + linear and the class activation map has the exact
  /// analytic form (a cosine classifier normalises the pooled features, so
  /// its maps need the gradient).
  bool head_is_linear(const std::string& cam_layer) const;

  /// Makes the classifier cosine (model.classifier: cosine; the normalised
  /// classifier of LDAM, Cao et al. 2019): logits_c = ⟨x/‖x‖, w_c/‖w_c‖⟩ of the
  /// pooled features x, in [−1, 1], with no bias. Replaces the linear layer by
  /// a freshly initialised one of the same shape without bias, registered
  /// under the same name. Call before the model is moved or trained.
  void use_cosine_classifier();
  bool cosine_classifier() const { return cosine_; }

  /// Parameters of h for `cam_layer` (the linear layer and any later stages).
  std::vector<torch::Tensor> head_parameters(const std::string& cam_layer);

  /// Puts f in evaluation mode and h in training mode, with h's BatchNorm
  /// layers (if any) kept in evaluation mode: Phase III trains only h, on
  /// synthetic feature maps whose statistics must not move the running means.
  void set_finetune_mode(const std::string& cam_layer);

  /// The final linear layer: weight float [C, K], bias float [C].
  torch::nn::Linear& classifier() { return fc_; }
  const std::vector<std::string>& stage_names() const { return stage_names_; }
  /// Channels K of the feature map at `cam_layer`.
  int64_t channels_at(const std::string& cam_layer) const;
  int64_t num_classes() const { return fc_->options.out_features(); }
  const std::string& arch() const { return arch_; }
  /// Side of the square images the network is built for: 32 (CIFAR) or 224
  /// (ImageNet). Any size the stages can downsample works.
  int64_t input_size() const { return input_size_; }
  /// Name the classifier is registered under ("linear", "fc").
  const std::string& classifier_name() const { return classifier_name_; }

  /// Stores every 4-D weight in channels-last (NHWC) memory format when `on`
  /// (contiguous NCHW when off), and from then on converts the images given to
  /// forward, features and forward_visiting to the same format, so that every
  /// convolution runs on NHWC data (METHOD.md is silent on layout; the values
  /// agree with NCHW up to float rounding). Call after moving the model to its
  /// device: Module::to keeps the format, copying weights in (copy_) keeps it too.
  void use_channels_last(bool on);
  bool channels_last() const { return channels_last_; }

  /// Called with a layer's name and output during forward_visiting.
  using LayerVisitor = std::function<void(const std::string& name, const torch::Tensor& out)>;
  /// forward(x), calling `visit` after the stem ("stem"), after every block of
  /// every stage ("layer1.0", "layer1.1", ...), after global average pooling
  /// ("avgpool", [N, K]) and after the classifier (classifier_name()). For
  /// inspection (models::summarize); returns the logits.
  torch::Tensor forward_visiting(const torch::Tensor& x, const LayerVisitor& visit);

 protected:
  Backbone(std::string arch, int64_t input_size)
      : arch_(std::move(arch)), input_size_(input_size) {}
  virtual torch::Tensor stem(const torch::Tensor& x) = 0;
  void add_stage(const std::string& name, torch::nn::Sequential stage, int64_t channels);
  void set_classifier(const std::string& name, torch::nn::Linear fc);

 private:
  size_t stage_index(const std::string& cam_layer) const;
  /// x in the network's memory format.
  torch::Tensor input_layout(const torch::Tensor& x) const;

  std::string arch_;
  int64_t input_size_;
  std::string classifier_name_;
  std::vector<std::string> stage_names_;
  std::vector<torch::nn::Sequential> stages_;
  std::vector<int64_t> stage_channels_;
  torch::Tensor classify(const torch::Tensor& pooled);

  torch::nn::Linear fc_{nullptr};
  bool channels_last_ = false;
  bool cosine_ = false;
};

/// Builds a network by name: resnet20/32/44/56/110 (CIFAR, option-A
/// shortcuts, 32×32 inputs) or resnet10/18/34/50/101/152 (ImageNet,
/// torchvision's layout, 224×224 inputs). Throws std::invalid_argument naming
/// the known models for an unknown name.
std::shared_ptr<Backbone> make_model(const std::string& name, int64_t num_classes);

/// The names make_model accepts.
std::vector<std::string> model_names();

/// Number of parameters (trainable tensors' elements).
int64_t count_parameters(const torch::nn::Module& m);

}  // namespace fsa::models
