#include "fsa/data/loader.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/cuda.h>

#include <cstring>
#include <numeric>
#include <stdexcept>

namespace fsa::data {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// Stream tag of the shuffle generator, apart from every sample index.
constexpr int64_t kShuffleStream = -1;
// Mixed into the seed of samples in a caller's order (start_epoch with order).
constexpr uint64_t kGivenOrderStream = 0x5A3D1E0F2C4B6987ULL;

void check_options(const LoaderOptions& o, int64_t size) {
  if (size < 1) throw std::invalid_argument("Loader: no samples");
  if (o.batch_size < 1) throw std::invalid_argument("Loader: batch_size must be >= 1");
  if (o.ranks < 1 || o.rank < 0 || o.rank >= o.ranks) {
    throw std::invalid_argument("Loader: rank must be in 0..ranks-1");
  }
  if (o.workers < 0) throw std::invalid_argument("Loader: workers must be >= 0");
  if (o.prefetch < 0) throw std::invalid_argument("Loader: prefetch must be >= 0");
}

}  // namespace

std::pair<int64_t, int64_t> batch_share(int64_t n, int rank, int ranks) {
  const int64_t base = n / ranks, extra = n % ranks;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  return splitmix64(splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(epoch)) ^
                    static_cast<uint64_t>(index));
}

Loader::Loader(std::vector<FileSample> samples, ImageTransform transform, LoaderOptions options)
    : options_(options) {
  labels_.reserve(samples.size());
  for (const auto& s : samples) labels_.push_back(s.label);
  auto files = std::make_shared<std::vector<FileSample>>(std::move(samples));
  auto t = std::make_shared<const ImageTransform>(std::move(transform));
  sample_ = [files, t](int64_t i, Rng& rng) {
    return (*t)(decode_image((*files)[static_cast<size_t>(i)].path), rng);
  };
  check_options(options_, size());
  pin_ = options_.pin_memory && torch::cuda::is_available();
}

Loader::Loader(std::vector<int64_t> labels, SampleFn sample, LoaderOptions options)
    : labels_(std::move(labels)), sample_(std::move(sample)), options_(options) {
  check_options(options_, size());
  if (!sample_) throw std::invalid_argument("Loader: no sample function");
  pin_ = options_.pin_memory && torch::cuda::is_available();
}

Loader::~Loader() { stop_workers(); }

int64_t Loader::batches_per_epoch() const {
  const int64_t b = options_.batch_size;
  return options_.drop_last ? size() / b : (size() + b - 1) / b;
}

std::vector<int64_t> Loader::order(int64_t epoch) const {
  std::vector<int64_t> o(labels_.size());
  std::iota(o.begin(), o.end(), 0);
  if (options_.shuffle) {
    Rng rng(sample_seed(options_.seed, epoch, kShuffleStream));
    for (int64_t i = size() - 1; i > 0; --i) std::swap(o[i], o[uniform_int(rng, 0, i)]);
  }
  return o;
}

void Loader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

Loader::Range Loader::epoch(int64_t epoch) {
  start_epoch(epoch);
  return Range(this);
}

void Loader::start_epoch(int64_t epoch) { begin_epoch(epoch, order(epoch), false); }

void Loader::start_epoch(int64_t epoch, std::vector<int64_t> order) {
  for (auto i : order) {
    if (i < 0 || i >= size()) {
      throw std::invalid_argument(fmt::format("Loader: sample index {} outside 0..{}", i,
                                              size() - 1));
    }
  }
  begin_epoch(epoch, std::move(order), true);
}

void Loader::skip_to(int64_t first) {
  if (epoch_ < 0) throw std::logic_error("Loader::skip_to before start_epoch");
  if (first < 0 || first > num_batches_) {
    throw std::invalid_argument(
        fmt::format("Loader::skip_to: batch {} outside 0..{}", first, num_batches_));
  }
  // Restarts the workers at `first`; the order and seeds stay the epoch's.
  auto order = order_;
  begin_epoch(epoch_, std::move(order), given_order_, first);
}

void Loader::begin_epoch(int64_t epoch, std::vector<int64_t> order, bool given, int64_t first) {
  stop_workers();
  epoch_ = epoch;
  order_ = std::move(order);
  given_order_ = given;
  const int64_t b = options_.batch_size, n = static_cast<int64_t>(order_.size());
  num_batches_ = options_.drop_last ? n / b : (n + b - 1) / b;
  stop_ = false;
  next_claim_ = first;
  next_deliver_ = first;
  ready_.clear();
  for (int w = 0; w < options_.workers; ++w) threads_.emplace_back([this] { worker_loop(); });
}

Batch Loader::make_batch(int64_t k) const {
  const int64_t global_begin = k * options_.batch_size;
  const int64_t global_end =
      std::min<int64_t>(global_begin + options_.batch_size, static_cast<int64_t>(order_.size()));
  const auto [share_begin, share_end] =
      batch_share(global_end - global_begin, options_.rank, options_.ranks);
  const int64_t begin = global_begin + share_begin, n = share_end - share_begin;
  Batch batch;
  batch.epoch = epoch_;
  batch.index = k;
  batch.labels = torch::empty({n}, torch::kInt64);
  batch.indices = torch::empty({n}, torch::kInt64);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t i = order_[static_cast<size_t>(begin + j)];
    // Own orders may repeat an image: seed by position so each copy differs.
    Rng rng(given_order_ ? sample_seed(options_.seed ^ kGivenOrderStream, epoch_, begin + j)
                         : sample_seed(options_.seed, epoch_, i));
    const auto x = sample_(i, rng).contiguous();
    if (!batch.images.defined()) {
      std::vector<int64_t> shape{n};
      shape.insert(shape.end(), x.sizes().begin(), x.sizes().end());
      batch.images = torch::empty(shape, torch::TensorOptions(x.scalar_type()).pinned_memory(pin_));
    } else if (x.sizes() != batch.images.sizes().slice(1) ||
               x.scalar_type() != batch.images.scalar_type()) {
      throw std::runtime_error(fmt::format(
          "Loader: sample {} has shape {}, the batch's first sample {}; the sample function "
          "must return one size",
          i, x.sizes(), batch.images.sizes().slice(1)));
    }
    // A raw copy: worker threads stay out of ATen's intra-op thread pool.
    std::memcpy(static_cast<char*>(batch.images.data_ptr()) + j * x.nbytes(), x.data_ptr(),
                x.nbytes());
    batch.labels.data_ptr<int64_t>()[j] = labels_[static_cast<size_t>(i)];
    batch.indices.data_ptr<int64_t>()[j] = i;
    if (stop_) break;  // abandoned: the batch is never delivered
  }
  return batch;
}

void Loader::worker_loop() {
  const int64_t capacity =
      options_.prefetch > 0 ? options_.prefetch : std::max<int64_t>(1, 2 * options_.workers);
  while (true) {
    int64_t k;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [&] {
        return stop_ || next_claim_ >= num_batches_ || next_claim_ < next_deliver_ + capacity;
      });
      if (stop_ || next_claim_ >= num_batches_) return;
      k = next_claim_++;
    }
    Slot slot;
    try {
      slot.batch = make_batch(k);
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) return;
      ready_[k] = std::move(slot);
    }
    ready_cv_.notify_all();
  }
}

std::optional<Batch> Loader::next() {
  if (epoch_ < 0) throw std::logic_error("Loader::next before start_epoch");
  Slot slot;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (next_deliver_ >= num_batches_) return std::nullopt;
    if (threads_.empty()) {
      // No workers: build the batch here.
      const int64_t k = next_deliver_++;
      lock.unlock();
      return make_batch(k);
    }
    ready_cv_.wait(lock, [&] { return ready_.count(next_deliver_) > 0; });
    auto it = ready_.find(next_deliver_);
    slot = std::move(it->second);
    ready_.erase(it);
    ++next_deliver_;
  }
  work_cv_.notify_all();
  if (slot.error) std::rethrow_exception(slot.error);
  return std::move(slot.batch);
}

}  // namespace fsa::data
