// Network input from a long-tailed dataset's splits, one interface for both
// kinds of storage (ARCHITECTURE.md, "Data"):
//  - resident sets (CIFAR, MNIST-style, image folders): uint8 tensors in
//    memory (on the GPU when the device is CUDA), augmented as batched tensor
//    operations: random crop of the 4-pixel zero-padded image and horizontal
//    flip (METHOD.md, Phase I), then per-channel normalisation;
//  - file-backed sets (list-file datasets: ImageNet-LT, Places-LT, ...):
//    images decoded as batches are made, with torchvision's ImageNet
//    pipelines (data::ImageTransform): random-resized crop, flip and colour
//    jitter for training; shorter side resized and centre crop for
//    evaluation. Whole passes run on data::Loader's worker threads, ahead of
//    the network; chosen indices (Phase III) are decoded in parallel at once.
// Every function returns float [B, C, H, W] normalised input on `device` and
// throws DataError naming the file of an image that cannot be decoded.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "fsa/data/loader.h"
#include "fsa/data/long_tail.h"
#include "fsa/data/sampler.h"

namespace fsa::data {

/// A batch of network input.
struct InputBatch {
  torch::Tensor inputs;   ///< float [B, C, H, W], normalised, on the device
  torch::Tensor labels;   ///< int64 [B], on the device
  /// int64 [B]: each image's position in its split (on the device for
  /// resident sets, so that no batch waits for a copy; CPU for file-backed).
  torch::Tensor indices;
  /// Images of the whole batch over every rank (data-parallel training,
  /// where this holds one rank's share); B in one process.
  int64_t global_size = 0;
};

/// Unaugmented input of `set`'s images at `indices` (int64 [B], any device).
/// `set` is data.train or data.test (or a select() of them).
torch::Tensor eval_inputs(const LongTailDataset& data, const ImageSet& set,
                          const torch::Tensor& indices, torch::Device device);

/// Augmented input of the training images at `indices` (int64 [B], any
/// device). Resident: random_crop_flip with padding 4, drawing from `gen` as
/// Phase I does. File-backed: data.train_transform; sample j draws from a
/// data::Rng seeded by the j-th of B seeds drawn from `gen` at once.
/// `keep` (int64 [M], positions in `indices`): the input of those images
/// alone, [M, C, H, W], with the draws still made for all B (a
/// data-parallel rank's share of a batch whose draws are one process's).
torch::Tensor train_inputs(const LongTailDataset& data, const torch::Tensor& indices,
                           at::Generator gen, torch::Device device, const torch::Tensor& keep = {});

/// Pixels for pictures: uint8 [B, C, H, W] on the CPU of `set`'s images at
/// `indices`. Resident: as stored; file-backed: decoded and brought to the
/// evaluation geometry (shorter side resized, centre crop), not normalised.
torch::Tensor picture_pixels(const LongTailDataset& data, const ImageSet& set,
                             const torch::Tensor& indices);

/// One unaugmented pass over a whole split in order (evaluation, Phase II's
/// statistics, Phase III's cached test features): batches of batch_size
/// (the last one shorter). File-backed sets are decoded on data.workers
/// threads ahead of the caller.
class SequentialBatches {
 public:
  /// Throws std::invalid_argument if batch_size < 1.
  SequentialBatches(const LongTailDataset& data, const ImageSet& set, int64_t batch_size,
                    torch::Device device);
  int64_t batches() const { return (size_ + batch_size_ - 1) / batch_size_; }
  /// The next batch; nullopt after the last.
  std::optional<InputBatch> next();

 private:
  const LongTailDataset& data_;
  const ImageSet& set_;
  int64_t batch_size_, size_, start_ = 0;
  torch::Device device_;
  torch::Tensor labels_;            // int64 [N] on the device (resident sets)
  std::unique_ptr<Loader> loader_;  // file-backed sets
};

/// Phase I's epochs: shuffled, augmented batches of the training set, in the
/// order `sampler` draws (instance_balanced by default: each image once).
/// Resident: the order is the sampler's draw from `gen` (randperm(N, gen)
/// when instance-balanced) and the crops and flips of each batch are drawn
/// from `gen`, the caller's generator of that epoch (a handle: draws advance
/// the caller's generator). File-backed: instance-balanced uses
/// data::Loader's order and per-sample seeds, from (seed, epoch) alone, and
/// does not draw from `gen`; the other samplers draw the order from `gen`.
/// When the last batch would hold a single image it is dropped (logged
/// once): batch norm cannot train on one image.
/// Data-parallel training (rank `rank` of `ranks`): each batch is this
/// rank's share (batch_share) of the global batch of one process, with the
/// same images and augmentation, so the ranks' shares tile every batch and
/// the epoch covers the training set exactly once; a last batch that would
/// give some rank fewer than 2 images is dropped (logged).
class TrainingBatches {
 public:
  /// `sampler` is a train.sampler name, `num_epochs` the schedule's length
  /// (for progressive). Throws std::invalid_argument if batch_size < 1, the
  /// sampler is unknown, or batch_size < 2 · ranks.
  TrainingBatches(const LongTailDataset& data, int64_t batch_size, uint64_t seed,
                  torch::Device device, const std::string& sampler = "instance_balanced",
                  int64_t num_epochs = 1, int rank = 0, int ranks = 1);
  int64_t batches_per_epoch() const;
  void start_epoch(int64_t epoch, at::Generator gen);
  /// The next batch of the epoch; nullopt after the last. Throws
  /// std::logic_error before start_epoch.
  std::optional<InputBatch> next();
  /// Right after start_epoch: continues the epoch after its first `batches`
  /// batches, without making them. The random state the skipped batches
  /// drew from the generator is the caller's to restore (the training loop
  /// puts the epoch generator back to its state at the checkpoint); the
  /// file-backed path seeds each image by its position and draws nothing.
  /// Throws std::invalid_argument outside 0..batches_per_epoch().
  void skip(int64_t batches);

 private:
  const LongTailDataset& data_;
  int64_t batch_size_, size_;
  int64_t used_;  ///< images per epoch: size_, less a last batch too small to share
  int rank_, ranks_;
  torch::Device device_;
  ClassSampler sampler_;
  torch::Tensor labels_;        // int64 [N] on the device (resident)
  torch::Tensor order_;         // int64 [N] on the device (resident)
  at::Generator gen_;  // a handle sharing the caller's generator (resident)
  int64_t start_ = 0;
  std::unique_ptr<Loader> loader_;  // file-backed
};

}  // namespace fsa::data
