#include "fsa/models/backbone.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/functional/pooling.h>

#include <stdexcept>

#include "fsa/models/batch_norm.h"
#include "fsa/models/cifar_resnet.h"
#include "fsa/models/imagenet_resnet.h"

namespace fsa::models {

void Backbone::add_stage(const std::string& name, torch::nn::Sequential stage,
                         int64_t channels) {
  stages_.push_back(register_module(name, stage));
  stage_names_.push_back(name);
  stage_channels_.push_back(channels);
}

void Backbone::set_classifier(const std::string& name, torch::nn::Linear fc) {
  fc_ = register_module(name, fc);
  classifier_name_ = name;
}

size_t Backbone::stage_index(const std::string& cam_layer) const {
  for (size_t i = 0; i < stage_names_.size(); ++i) {
    if (stage_names_[i] == cam_layer) return i;
  }
  throw std::invalid_argument(fmt::format("feature.cam_layers: '{}' is not a layer of {}; "
                                          "expected one of {}", cam_layer, arch_,
                                          fmt::join(stage_names_, ", ")));
}

void Backbone::use_channels_last(bool on) {
  const auto format = on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  torch::NoGradGuard no_grad;
  // set_data keeps each parameter's identity, so optimisers holding it stay valid.
  for (auto& p : parameters()) {
    if (p.dim() == 4) p.set_data(p.data().contiguous(format));
  }
  channels_last_ = on;
}

torch::Tensor Backbone::input_layout(const torch::Tensor& x) const {
  return channels_last_ && x.dim() == 4 ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
}

torch::Tensor Backbone::features(const torch::Tensor& x, const std::string& cam_layer) {
  const auto last = stage_index(cam_layer);
  auto a = stem(input_layout(x));
  for (size_t i = 0; i <= last; ++i) a = stages_[i]->forward(a);
  return a;
}

void Backbone::use_cosine_classifier() {
  const auto options = fc_->weight.options();  // the new layer stays on the old one's device
  const auto& o = fc_->options;
  fc_ = replace_module(classifier_name_,
                       torch::nn::Linear(torch::nn::LinearOptions(o.in_features(), o.out_features())
                                             .bias(false)));
  fc_->to(options.device(), options.dtype().toScalarType());
  // Unit-norm rows from U(−1, 1), as Cao et al.'s NormedLinear initialises.
  torch::NoGradGuard no_grad;
  fc_->weight.uniform_(-1.0, 1.0);
  fc_->weight.div_(fc_->weight.norm(2, /*dim=*/1, /*keepdim=*/true));
  cosine_ = true;
}

torch::Tensor Backbone::classify(const torch::Tensor& pooled) {
  if (!cosine_) return fc_->forward(pooled);
  namespace F = torch::nn::functional;
  const auto unit = F::NormalizeFuncOptions().dim(1);
  return torch::matmul(F::normalize(pooled, unit), F::normalize(fc_->weight, unit).t());
}

torch::Tensor Backbone::head(const torch::Tensor& a, const std::string& cam_layer) {
  auto h = a;
  for (size_t i = stage_index(cam_layer) + 1; i < stages_.size(); ++i) h = stages_[i]->forward(h);
  return classify(h.mean({2, 3}));
}

torch::Tensor Backbone::forward(const torch::Tensor& x) {
  return head(features(x, stage_names_.back()), stage_names_.back());
}

torch::Tensor Backbone::forward_visiting(const torch::Tensor& x, const LayerVisitor& visit) {
  auto a = stem(input_layout(x));
  visit("stem", a);
  for (size_t s = 0; s < stages_.size(); ++s) {
    int64_t b = 0;
    for (auto& block : *stages_[s]) {
      a = block.forward(a);
      visit(fmt::format("{}.{}", stage_names_[s], b++), a);
    }
  }
  auto pooled = a.mean({2, 3});
  visit("avgpool", pooled);
  auto y = classify(pooled);
  visit(classifier_name_, y);
  return y;
}

bool Backbone::head_is_linear(const std::string& cam_layer) const {
  return stage_index(cam_layer) + 1 == stages_.size() && !cosine_;
}

int64_t Backbone::channels_at(const std::string& cam_layer) const {
  return stage_channels_[stage_index(cam_layer)];
}

std::vector<torch::Tensor> Backbone::head_parameters(const std::string& cam_layer) {
  std::vector<torch::Tensor> params;
  for (size_t i = stage_index(cam_layer) + 1; i < stages_.size(); ++i) {
    for (auto& p : stages_[i]->parameters()) params.push_back(p);
  }
  for (auto& p : fc_->parameters()) params.push_back(p);
  return params;
}

void Backbone::set_finetune_mode(const std::string& cam_layer) {
  eval();
  for (size_t i = stage_index(cam_layer) + 1; i < stages_.size(); ++i) {
    stages_[i]->train();
    for (auto& m : stages_[i]->modules()) {
      if (m->as<BatchNorm2d>()) m->eval();
    }
  }
  fc_->train();
}

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

namespace {
// Disjoint depth sets: a name never means two networks.
constexpr int64_t kCifarDepths[] = {20, 32, 44, 56, 110};
constexpr int64_t kImageNetDepths[] = {10, 18, 34, 50, 101, 152};
}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (auto d : kCifarDepths) names.push_back(fmt::format("resnet{}", d));
  for (auto d : kImageNetDepths) names.push_back(fmt::format("resnet{}", d));
  return names;
}

std::shared_ptr<Backbone> make_model(const std::string& name, int64_t num_classes) {
  if (num_classes < 1) throw std::invalid_argument("make_model: num_classes must be >= 1");
  for (int64_t depth : kCifarDepths) {
    if (name == fmt::format("resnet{}", depth)) {
      return std::make_shared<CifarResNet>(depth, num_classes);
    }
  }
  for (int64_t depth : kImageNetDepths) {
    if (name == fmt::format("resnet{}", depth)) {
      return std::make_shared<ImageNetResNet>(depth, num_classes);
    }
  }
  throw std::invalid_argument(fmt::format("model.name '{}' is not known; expected one of {}", name,
                                          fmt::join(model_names(), ", ")));
}

}  // namespace fsa::models
