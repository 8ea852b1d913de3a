#include "fsa/train/loss.h"

#include <fmt/format.h>
#include <torch/nn/functional/loss.h>

#include <cmath>
#include <stdexcept>

namespace fsa::train {
namespace {

namespace F = torch::nn::functional;

void check_counts(const std::vector<int64_t>& counts, const char* what) {
  for (size_t c = 0; c < counts.size(); ++c) {
    if (counts[c] < 1) {
      throw std::invalid_argument(
          fmt::format("{}: class {} has {} training images; every class "
                      "needs at least one",
                      what, c, counts[c]));
    }
  }
}

torch::Tensor counts_tensor(const std::vector<int64_t>& counts) {
  return torch::tensor(counts, torch::kFloat64);
}

}  // namespace

torch::Tensor class_balanced_weights(const std::vector<int64_t>& counts, double beta) {
  if (!(beta >= 0 && beta < 1)) {
    throw std::invalid_argument(
        fmt::format("class_balanced_weights: β must be in [0, 1), got {}", beta));
  }
  check_counts(counts, "class_balanced_weights");
  auto n = counts_tensor(counts);
  // 1 − β^n in float64: at β = 0.9999 and n = 5000 the float32 powers lose digits.
  auto w = (1.0 - beta) / (1.0 - torch::pow(beta, n));
  w = w / w.sum() * double(counts.size());
  return w.to(torch::kFloat32);
}

torch::Tensor ldam_margins(const std::vector<int64_t>& counts, double max_margin) {
  check_counts(counts, "ldam_margins");
  auto m = 1.0 / torch::pow(counts_tensor(counts), 0.25);
  return (m * (max_margin / m.max())).to(torch::kFloat32);
}

torch::Tensor log_class_prior(const std::vector<int64_t>& counts) {
  check_counts(counts, "log_class_prior");
  auto n = counts_tensor(counts);
  return torch::log(n / n.sum()).to(torch::kFloat32);
}

torch::Tensor adjust_logits(const torch::Tensor& logits, const torch::Tensor& log_prior,
                            double tau) {
  return tau == 0 ? logits : logits - tau * log_prior;
}

Criterion::Criterion(const io::LossConfig& cfg, const std::vector<int64_t>& class_counts,
                     torch::Device device)
    : cfg_(cfg) {
  try {
    if (cfg.weighting != "none") {
      weights_ = class_balanced_weights(class_counts, cfg.beta).to(device);
    }
    if (cfg.name == "ldam") margins_ = ldam_margins(class_counts, cfg.max_margin).to(device);
    if (cfg.name == "balanced_softmax") log_prior_ = log_class_prior(class_counts).to(device);
  } catch (const std::invalid_argument& e) {
    throw io::ConfigError(
        fmt::format("train.loss {} (weighting {}): {}", cfg.name, cfg.weighting, e.what()));
  }
}

torch::Tensor Criterion::weights_at(int64_t epoch) const {
  if (cfg_.weighting == "none") return {};
  if (cfg_.weighting == "drw" && epoch < cfg_.drw_epoch) return {};
  return weights_;
}

torch::Tensor Criterion::operator()(const torch::Tensor& logits, const torch::Tensor& targets,
                                    int64_t epoch) const {
  const auto w = weights_at(epoch);
  auto ce = [&](const torch::Tensor& z) {
    auto options = F::CrossEntropyFuncOptions();
    if (w.defined()) options.weight(w);
    return F::cross_entropy(z, targets, options);
  };
  if (cfg_.name == "cross_entropy") return ce(logits);
  if (cfg_.name == "balanced_softmax") return ce(logits + log_prior_);
  if (cfg_.name == "ldam") {
    // Only the target logit moves down by its class's margin, then all are scaled.
    auto margin = margins_.index_select(0, targets).unsqueeze(1);
    auto target_mask = torch::zeros_like(logits).scatter_(1, targets.unsqueeze(1), 1.0);
    return ce(cfg_.scale * (logits - target_mask * margin));
  }
  // focal: the softmax probability of the target, p_t, from the log-softmax.
  auto log_p = torch::log_softmax(logits, /*dim=*/1).gather(1, targets.unsqueeze(1)).squeeze(1);
  auto per_image = -torch::pow(1.0 - log_p.exp(), cfg_.gamma) * log_p;
  if (w.defined()) per_image = per_image * w.index_select(0, targets);
  return per_image.mean();
}

std::string Criterion::describe() const {
  std::string text = cfg_.name;
  if (cfg_.name == "focal") text += fmt::format(" (γ = {})", cfg_.gamma);
  if (cfg_.name == "ldam") {
    text += fmt::format(" (max margin {}, scale {})", cfg_.max_margin, cfg_.scale);
  }
  if (cfg_.weighting == "class_balanced") {
    text += fmt::format(", class-balanced weights (β = {})", cfg_.beta);
  } else if (cfg_.weighting == "drw") {
    text += fmt::format(", deferred re-weighting from epoch {} (β = {})", cfg_.drw_epoch + 1,
                        cfg_.beta);
  }
  return text;
}

}  // namespace fsa::train
