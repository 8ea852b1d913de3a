// Training criteria for long-tailed data: the losses that long-tail papers
// compare against, each a function of the logits, the targets and the
// training set's class counts (README, "Methods").
//
//   cross_entropy     softmax cross-entropy (METHOD.md, Phase I)
//   focal             −(1 − p_t)^γ log p_t (Lin et al. 2017, Eq. 5, on the softmax)
//   ldam              label-distribution-aware margins (Cao et al. 2019, Eq. 13)
//   balanced_softmax  cross-entropy on logits + log π (Ren et al. 2020, Eq. 4)
//
// Any of them takes class weights: none, class_balanced (effective number
// of samples, Cui et al. 2019, Eq. 7) from the first epoch, or drw (deferred
// re-weighting, Cao et al. 2019, Algorithm 1): class-balanced from
// `drw_epoch` on. Post-hoc logit adjustment (Menon et al. 2021, Eq. 9) is an
// evaluation setting: test.logit_adjust_tau.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fsa/io/config.h"

namespace fsa::train {

/// Class-balanced weights by the effective number of samples (Cui et al.
/// 2019, Eq. 7): w_c = (1 − β) / (1 − β^{n_c}), rescaled so that Σ_c w_c = C
/// (as Cui et al. and Cao et al. do). β = 0 gives all ones. float [C] on the
/// CPU. Throws std::invalid_argument if β is outside [0, 1) or a count is < 1.
torch::Tensor class_balanced_weights(const std::vector<int64_t>& counts, double beta);

/// LDAM margins (Cao et al. 2019, Eq. 13): Δ_c ∝ n_c^{−1/4}, scaled so that the
/// largest (the rarest class's) is `max_margin`. float [C] on the CPU.
/// Throws std::invalid_argument if a count is < 1.
torch::Tensor ldam_margins(const std::vector<int64_t>& counts, double max_margin);

/// log π: the log of the training set's class prior n_c / N. float [C] on
/// the CPU. Throws std::invalid_argument if a count is < 1.
torch::Tensor log_class_prior(const std::vector<int64_t>& counts);

/// Post-hoc logit adjustment (Menon et al. 2021, Eq. 9): logits − τ · log π.
/// logits float [N, C]; log_prior float [C] (log_class_prior) on their device.
torch::Tensor adjust_logits(const torch::Tensor& logits, const torch::Tensor& log_prior,
                            double tau);

/// A training criterion configured by train.loss, for one training set.
///
///   Criterion loss(cfg.train.loss, ws.data.class_counts, ws.device);
///   auto l = loss(logits, targets, epoch);   // mean over the batch, float []
class Criterion {
 public:
  /// Throws io::ConfigError (naming train.loss) if the counts cannot carry
  /// the configured weights or margins (a class without training images).
  Criterion(const io::LossConfig& cfg, const std::vector<int64_t>& class_counts,
            torch::Device device);

  /// The loss of logits float [N, C] for targets int64 [N] at 0-based
  /// `epoch`, a float scalar. With class weights w, cross_entropy, ldam and
  /// balanced_softmax are PyTorch's weighted mean Σ_i w_{y_i} l_i / Σ_i w_{y_i}
  /// (F.cross_entropy(weight=w)); focal is the plain mean of w_{y_i} l_i, as
  /// Cao et al.'s FocalLoss averages, with p_t the target's softmax
  /// probability (their code takes exp(−w_y·CE), which differs once weighted).
  torch::Tensor operator()(const torch::Tensor& logits, const torch::Tensor& targets,
                           int64_t epoch) const;

  /// The class weights in force at `epoch`: float [C], or an undefined
  /// tensor when none are.
  torch::Tensor weights_at(int64_t epoch) const;

  /// One line for the log: the loss, its parameters and its weighting.
  std::string describe() const;

 private:
  io::LossConfig cfg_;
  torch::Tensor weights_;    // float [C] class-balanced weights, if any weighting
  torch::Tensor margins_;    // float [C], ldam
  torch::Tensor log_prior_;  // float [C], balanced_softmax
};

}  // namespace fsa::train
