// BatchNorm2d that can synchronise its batch statistics over the ranks of a
// data-parallel run (PyTorch's torch.nn.SyncBatchNorm; issue 13).
//
// In one process, or with synchronisation off, it is torch::nn::BatchNorm2d
// exactly (the same parameters, buffers, state_dict names and kernels). With
// a process group set by sync_batchnorm(), a module in training mode
// normalises by the mean and variance of the global batch (every rank's
// share), updates its running statistics from them, and its backward pass
// all-reduces the two per-channel sums the input gradient needs, so that a
// data-parallel step equals one process's step on the whole batch.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/options/batchnorm.h>

#include <memory>
#include <ostream>

namespace fsa::dist {
class Group;
}

namespace fsa::models {

/// torch::nn::BatchNorm2d (affine, tracking running statistics, momentum
/// 0.1, eps 1e-5) with optional synchronised statistics (see the file
/// comment). Parameters weight, bias and buffers running_mean, running_var,
/// num_batches_tracked, as torch.nn.BatchNorm2d names them. (LibTorch does
/// not export its BatchNorm2dImpl's base for deriving from it.)
class BatchNorm2dImpl : public torch::nn::Cloneable<BatchNorm2dImpl> {
 public:
  explicit BatchNorm2dImpl(int64_t num_features)
      : BatchNorm2dImpl(torch::nn::BatchNormOptions(num_features)) {}
  explicit BatchNorm2dImpl(torch::nn::BatchNormOptions options);

  /// Registers the parameters and buffers with their initial values.
  void reset() override;
  /// weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0.
  void reset_parameters();

  /// x: [N, C, H, W], float32, bfloat16 or float64 (any memory format); the
  /// output has x's shape and dtype. One process, or evaluation mode:
  /// at::batch_norm as torch::nn::BatchNorm2d calls it. In training mode
  /// with a group of more than one rank: the statistics are those of the
  /// concatenation of every rank's x (each rank calls forward, and
  /// backward, in the same order), combined in float64 from per-rank means
  /// and variances; running_var takes the unbiased variance over all N·H·W
  /// values, as torch.nn.SyncBatchNorm's. Throws std::invalid_argument for
  /// an input that is not 4-D or a global batch of one value per channel,
  /// and TrainingError (train/) from a collective that times out.
  torch::Tensor forward(const torch::Tensor& x);

  /// "fsa::models::BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=true,
  /// track_running_stats=true)", as torch::nn::BatchNorm2d prints itself.
  void pretty_print(std::ostream& stream) const override;

  /// The group whose ranks share statistics (nullptr: this rank's alone).
  void set_group(std::shared_ptr<dist::Group> group) { group_ = std::move(group); }
  const std::shared_ptr<dist::Group>& group() const { return group_; }

  torch::nn::BatchNormOptions options;
  torch::Tensor weight, bias;                                    ///< float [C]
  torch::Tensor running_mean, running_var, num_batches_tracked;  ///< float [C], [C]; int64 []

 private:
  std::shared_ptr<dist::Group> group_;
};
TORCH_MODULE(BatchNorm2d);

/// Sets `group` on every fsa::models::BatchNorm2d in `module` (nullptr turns
/// synchronisation off); PyTorch's convert_sync_batchnorm. Returns how many
/// BatchNorm layers it set.
int64_t sync_batchnorm(torch::nn::Module& module, std::shared_ptr<dist::Group> group);

}  // namespace fsa::models
