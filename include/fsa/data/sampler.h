// How Phase I draws an epoch's training images (train.sampler): the data
// samplers of decoupled long-tail training (Kang et al. 2020, Sec. 3.1).
// Class j is drawn with probability p_j = n_j^q / Σ_i n_i^q, then one of its
// images uniformly:
//   instance_balanced  q = 1: every image once per epoch (a permutation, the
//                      default and what plain PyTorch training does)
//   class_balanced     q = 0: every class equally often
//   square_root        q = 1/2
//   progressive        p_j(t) = (1 − t/T)·p_j^IB + (t/T)·p_j^CB at epoch t of T
// The non-default samplers draw with replacement; an epoch has as many draws
// as the training set has images, so its length does not change.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fsa::data {

/// A sampler's class probabilities at 0-based `epoch` of `num_epochs`, from
/// the training set's class counts. float64 [C] on the CPU, summing to 1.
/// Throws std::invalid_argument for an unknown sampler name (the message
/// lists the known ones) or counts without any image.
torch::Tensor sampler_class_probabilities(const std::string& sampler,
                                          const std::vector<int64_t>& counts, int64_t epoch,
                                          int64_t num_epochs);

/// Draws Phase I's epochs by train.sampler.
class ClassSampler {
 public:
  /// `labels` int64 [N] of the training set, classes in [0, num_classes).
  /// Throws std::invalid_argument for an unknown name or an empty class
  /// under a sampler that must draw from it.
  ClassSampler(std::string name, const torch::Tensor& labels, int64_t num_classes,
               int64_t num_epochs);

  /// True for instance_balanced: the epoch is randperm(N, gen) exactly, as
  /// it was before samplers existed.
  bool is_permutation() const { return name_ == "instance_balanced"; }

  /// The training-set indices of 0-based `epoch`: int64 [N] on the CPU. All
  /// randomness is drawn from `gen`: N class draws (torch::multinomial with
  /// replacement), then N uniform positions within the drawn classes.
  torch::Tensor epoch_indices(int64_t epoch, at::Generator& gen) const;

  const std::string& name() const { return name_; }

 private:
  std::string name_;
  int64_t size_, num_epochs_;
  std::vector<int64_t> counts_;
  torch::Tensor members_;  // int64 [N]: indices sorted by class
  torch::Tensor offsets_;  // int64 [C]: where each class starts in members_
};

}  // namespace fsa::data
