// A parallel loader for large-image datasets (ARCHITECTURE.md: "Large-image
// datasets decode on worker threads into pinned host batches"): worker
// threads decode and augment samples into a bounded queue of ready batches,
// delivered in order.
//
// Reproducibility: the sample order of epoch e comes from (seed, e) alone and
// sample i of epoch e is augmented with a generator seeded from (seed, e, i)
// alone, so the batches are the same for any number of workers, any
// scheduling and any batch size (the last only regroups them).
//
//   data::Loader loader(list.samples, data::ImageTransform::imagenet_train(), {128, 4});
//   for (int64_t e = 0; e < epochs; ++e) {
//     for (auto& batch : loader.epoch(e)) train_step(batch.images, batch.labels);
//   }
#pragma once

#include <torch/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "fsa/data/image_set.h"
#include "fsa/data/image_transforms.h"

namespace fsa::data {

struct LoaderOptions {
  int64_t batch_size = 128;
  /// Worker threads; 0 builds each batch in the calling thread, on demand.
  int workers = 2;
  bool shuffle = true;
  /// Drop a last batch smaller than batch_size (default: deliver it).
  bool drop_last = false;
  uint64_t seed = 0;
  /// Batches being built or ready at once (0: 2 × workers, at least 1).
  int64_t prefetch = 0;
  /// Allocate batches in page-locked memory, for asynchronous copies to a
  /// CUDA device. Ignored (ordinary memory) when CUDA is not available.
  bool pin_memory = false;
  /// Data-parallel training: this process is rank `rank` of `ranks`, and
  /// batch k holds only its share (batch_share) of the global batch k; the
  /// order, the batches and each image's augmentation are those of one
  /// process, so the ranks' shares of a batch tile it exactly.
  int rank = 0, ranks = 1;
};

/// Rank `rank`'s share of a global batch of n items: [begin, end), the
/// items split as evenly as they go (the first n mod ranks ranks take one
/// more). The shares of ranks 0..ranks−1 tile 0..n in order.
std::pair<int64_t, int64_t> batch_share(int64_t n, int rank, int ranks);

/// One batch, in delivery order.
struct Batch {
  torch::Tensor images;   ///< float [B, 3, H, W] (as the sample function returns them)
  torch::Tensor labels;   ///< int64 [B]
  torch::Tensor indices;  ///< int64 [B]: the dataset index of each sample
  int64_t epoch = 0;
  int64_t index = 0;  ///< batch number within the epoch, from 0
};

/// Produces sample `index` (float [3, H, W]) drawing its randomness from
/// `rng`. Called concurrently from worker threads: it must be thread-safe.
using SampleFn = std::function<torch::Tensor(int64_t index, Rng& rng)>;

/// The seed of sample `index` in `epoch` (SplitMix64 of the three).
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index);

class Loader {
 public:
  /// Image files: decode_image then `transform`. Throws
  /// std::invalid_argument for an empty list or bad options.
  Loader(std::vector<FileSample> samples, ImageTransform transform, LoaderOptions options);
  /// Any samples: `labels[i]` is the label of sample i, made by `sample`.
  Loader(std::vector<int64_t> labels, SampleFn sample, LoaderOptions options);
  /// Stops the workers (each finishes at most the sample it is on) and joins.
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t size() const { return static_cast<int64_t>(labels_.size()); }
  int64_t batches_per_epoch() const;
  const LoaderOptions& options() const { return options_; }
  /// The sample order of `epoch`: a permutation of 0..N−1 seeded by (seed,
  /// epoch) if shuffle, else 0..N−1.
  std::vector<int64_t> order(int64_t epoch) const;

  /// Starts `epoch` (stopping a running one) and returns its batches as a
  /// range: `for (auto& batch : loader.epoch(e))`. Every index is delivered
  /// exactly once (minus the dropped tail with drop_last).
  class Range;
  Range epoch(int64_t epoch);

  /// start_epoch + next(): the same, without the range.
  void start_epoch(int64_t epoch);
  /// Starts `epoch` with the caller's sample order (a sampler's draws: any
  /// length, indices may repeat). Sample j of the order is augmented with a
  /// generator seeded from (seed, epoch, j), so a repeated image gets its own
  /// augmentation. Throws std::invalid_argument for an index outside 0..N−1.
  void start_epoch(int64_t epoch, std::vector<int64_t> order);
  /// Continues the current epoch at batch `first` (0-based; what follows is
  /// what the uninterrupted epoch would deliver from there): a resume within
  /// an epoch. Throws std::logic_error before any epoch and
  /// std::invalid_argument for a batch outside 0..batches_per_epoch().
  void skip_to(int64_t first);
  /// The next batch of the current epoch, in order; nullopt after the last.
  /// Rethrows the exception a sample raised (e.g. DataError naming a corrupt
  /// image) when its batch is due. Throws std::logic_error before any epoch.
  std::optional<Batch> next();

 private:
  void stop_workers();
  void begin_epoch(int64_t epoch, std::vector<int64_t> order, bool given, int64_t first = 0);
  void worker_loop();
  Batch make_batch(int64_t batch_index) const;

  std::vector<int64_t> labels_;
  SampleFn sample_;
  LoaderOptions options_;
  bool pin_ = false;

  // Current epoch. The order and batch count are written only while no
  // worker runs.
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;
  bool given_order_ = false;  ///< order_ came from the caller: seeds by position
  int64_t num_batches_ = 0;

  std::mutex mutex_;
  std::condition_variable work_cv_, ready_cv_;
  std::atomic<bool> stop_{false};
  int64_t next_claim_ = 0;    ///< next batch a worker will build
  int64_t next_deliver_ = 0;  ///< next batch next() returns
  struct Slot {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  std::map<int64_t, Slot> ready_;
  std::vector<std::thread> threads_;
};

/// An input range over one epoch's batches (single pass).
class Loader::Range {
 public:
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = Batch*;
    using reference = Batch&;
    iterator() = default;
    explicit iterator(Loader* loader) : loader_(loader) { ++*this; }
    Batch& operator*() { return *current_; }
    Batch* operator->() { return &*current_; }
    iterator& operator++() {
      current_ = loader_->next();
      if (!current_) loader_ = nullptr;
      return *this;
    }
    bool operator==(const iterator& o) const { return loader_ == o.loader_; }
    bool operator!=(const iterator& o) const { return !(*this == o); }

   private:
    Loader* loader_ = nullptr;
    std::optional<Batch> current_;
  };
  explicit Range(Loader* loader) : loader_(loader) {}
  iterator begin() { return iterator(loader_); }
  iterator end() { return iterator(); }

 private:
  Loader* loader_;
};

}  // namespace fsa::data
