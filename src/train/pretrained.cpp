#include "fsa/train/pretrained.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <map>

#include "fsa/io/torch_file.h"
#include "fsa/train/checkpoint.h"

namespace fsa::train {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

/// "a, b, c and 5 more": long key lists stay readable.
std::string some(const std::vector<std::string>& keys) {
  constexpr size_t kShown = 8;
  if (keys.size() <= kShown) return fmt::format("{}", fmt::join(keys, ", "));
  return fmt::format("{} and {} more", fmt::join(keys.begin(), keys.begin() + kShown, ", "),
                     keys.size() - kShown);
}

std::string shape(const torch::Tensor& t) { return fmt::format("{}", fmt::join(t.sizes(), "×")); }

}  // namespace

PretrainedLoad load_pretrained(const std::string& path, models::Backbone& model) {
  io::StateDict file;
  try {
    file = io::read_state_dict(path);
  } catch (const std::runtime_error& e) {
    throw CheckpointError(fmt::format("model.pretrained: {}", e.what()));
  }
  // The model's tensors in its own order (messages list keys that way), and by name.
  std::vector<std::pair<std::string, torch::Tensor>> ordered;
  for (const auto& p : model.named_parameters()) ordered.emplace_back(p.key(), p.value());
  for (const auto& b : model.named_buffers()) ordered.emplace_back(b.key(), b.value());
  const std::map<std::string, torch::Tensor> targets(ordered.begin(), ordered.end());

  const auto head = model.classifier_name() + ".";
  const std::string other_head = head == "fc." ? "linear." : "fc.";
  PretrainedLoad out;
  std::map<std::string, torch::Tensor> given;  // the file's entries under the model's names
  std::vector<std::string> unexpected, mismatched;
  for (auto [name, tensor] : file) {
    if (!targets.count(name) &&
        (starts_with(name, "feature_sub_net.") || starts_with(name, "classifier."))) {
      ++out.duplicates;  // the reference registers its modules twice
      continue;
    }
    if (starts_with(name, other_head) && !targets.count(name)) {
      name = head + name.substr(other_head.size());
    }
    if (!targets.count(name)) {
      // A head the model does not have (a bias beside a cosine classifier)
      // goes with the head, which starts afresh.
      if (!starts_with(name, head)) unexpected.push_back(name);
      continue;
    }
    given[name] = tensor;
  }
  std::vector<std::string> missing;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (const auto& [name, target] : ordered) {
    const bool is_head = starts_with(name, head);
    const auto it = given.find(name);
    if (is_head &&
        (model.cosine_classifier() || it == given.end() || it->second.sizes() != target.sizes())) {
      out.reinitialised.push_back(name);
      continue;
    }
    if (it == given.end()) {
      if (!(name.size() > 20 && name.substr(name.size() - 20) == ".num_batches_tracked")) {
        missing.push_back(name);
      }
      continue;
    }
    if (it->second.sizes() != target.sizes()) {
      mismatched.push_back(fmt::format("{} ({} in the file, {} in {})", name, shape(it->second),
                                       shape(target), model.arch()));
      continue;
    }
    copies.emplace_back(target, it->second);
  }
  // The reinitialised head's file entries (another class count) are not
  // "unexpected": they were matched by name.
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::vector<std::string> parts;
    if (!missing.empty()) parts.push_back(fmt::format("missing {}", some(missing)));
    if (!unexpected.empty())
      parts.push_back(fmt::format("not in {}: {}", model.arch(), some(unexpected)));
    if (!mismatched.empty()) parts.push_back(fmt::format("other shapes: {}", some(mismatched)));
    throw CheckpointError(fmt::format(
        "model.pretrained '{}': its weights do not fit {} (model.name): {}; give weights of the "
        "same architecture (torchvision's resnetNN for resnet10–152, the CIFAR ResNet for "
        "resnet20–110)",
        path, model.arch(), fmt::join(parts, "; ")));
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, value] : copies) target.copy_(value);
  out.loaded = copies.size();
  return out;
}

}  // namespace fsa::train
