#include "fsa/data/inputs.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

#include "fsa/data/transforms.h"

namespace fsa::data {
namespace {

std::vector<int64_t> cpu_indices(const torch::Tensor& indices) {
  const auto idx = indices.to(torch::kCPU, torch::kInt64).contiguous();
  return {idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel()};
}

/// Decodes set.files at `indices` and applies `transform` to each, in
/// parallel; sample j draws from Rng(seeds[j]). Returns [B, ...] stacked.
torch::Tensor decode_batch(const ImageSet& set, const std::vector<int64_t>& indices,
                           const ImageTransform& transform, const std::vector<uint64_t>& seeds) {
  const auto n = static_cast<int64_t>(indices.size());
  std::vector<torch::Tensor> out(indices.size());
  // at::parallel_for rethrows the first exception a chunk raises (a DataError
  // naming the file).
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const auto& sample = set.files.at(static_cast<size_t>(indices[size_t(j)]));
      Rng rng(seeds[size_t(j)]);
      out[size_t(j)] = transform(decode_image(sample.path), rng);
    }
  });
  return torch::stack(out);
}

LoaderOptions loader_options(const LongTailDataset& data, int64_t batch_size, bool shuffle,
                             uint64_t seed, torch::Device device) {
  LoaderOptions o;
  o.batch_size = batch_size;
  o.workers = data.workers;
  o.shuffle = shuffle;
  o.seed = seed;
  o.pin_memory = device.is_cuda();
  return o;
}

InputBatch to_device(Batch&& b, torch::Device device) {
  const bool async = device.is_cuda();
  return {b.images.to(device, /*non_blocking=*/async), b.labels.to(device, async),
          std::move(b.indices)};
}

void check_batch_size(int64_t batch_size, const char* what) {
  if (batch_size < 1) {
    throw std::invalid_argument(fmt::format("{}: batch size must be >= 1, got {}", what,
                                            batch_size));
  }
}

}  // namespace

torch::Tensor eval_inputs(const LongTailDataset& data, const ImageSet& set,
                          const torch::Tensor& indices, torch::Device device) {
  if (!set.file_backed()) {
    return normalize(set.images.index_select(0, indices.to(set.images.device())).to(device),
                     data.mean, data.std);
  }
  const auto idx = cpu_indices(indices);
  return decode_batch(set, idx, data.eval_transform, std::vector<uint64_t>(idx.size(), 0))
      .to(device);
}

torch::Tensor train_inputs(const LongTailDataset& data, const torch::Tensor& indices,
                           at::Generator gen, torch::Device device, const torch::Tensor& keep) {
  const auto& train = data.train;
  const int64_t n = indices.size(0);
  // Rows `keep` of a tensor drawn for all n images (all of them without it).
  const auto kept = [&](const torch::Tensor& t) {
    return keep.defined() ? t.index_select(0, keep.to(t.device())) : t;
  };
  if (!train.file_backed()) {
    const auto d = draw_crop_flip(n, 4, gen);  // random_crop_flip's draws
    const auto idx = kept(indices.to(train.images.device()));
    return normalize(
        crop_flip(train.images.index_select(0, idx), 4, kept(d.oy), kept(d.ox), kept(d.flip)),
        data.mean, data.std);
  }
  const auto drawn = kept(torch::randint(0, int64_t(1) << 62, {n}, gen, torch::kInt64));
  const auto idx = cpu_indices(kept(indices.cpu()));
  std::vector<uint64_t> seeds(idx.size());
  for (size_t j = 0; j < idx.size(); ++j) seeds[j] = uint64_t(drawn.data_ptr<int64_t>()[j]);
  return decode_batch(train, idx, data.train_transform, seeds).to(device);
}

torch::Tensor picture_pixels(const LongTailDataset& data, const ImageSet& set,
                             const torch::Tensor& indices) {
  if (!set.file_backed()) {
    return set.images.index_select(0, indices.to(set.images.device())).cpu();
  }
  const auto idx = cpu_indices(indices);
  const auto& t = data.eval_transform;
  std::vector<torch::Tensor> out(idx.size());
  at::parallel_for(0, int64_t(idx.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const auto image = decode_image(set.files.at(size_t(idx[size_t(j)])).path);
      out[size_t(j)] = center_crop(resize_shorter_side(image, t.resize_size), t.crop_size,
                                   t.crop_size)
                           .permute({2, 0, 1});
    }
  });
  return torch::stack(out);
}

SequentialBatches::SequentialBatches(const LongTailDataset& data, const ImageSet& set,
                                     int64_t batch_size, torch::Device device)
    : data_(data), set_(set), batch_size_(batch_size), size_(set.size()), device_(device) {
  check_batch_size(batch_size, "SequentialBatches");
  if (set.file_backed()) {
    loader_ = std::make_unique<Loader>(set.files, data.eval_transform,
                                       loader_options(data, batch_size, false, 0, device));
    loader_->start_epoch(0);
  } else {
    labels_ = set.labels.to(device);
  }
}

std::optional<InputBatch> SequentialBatches::next() {
  if (loader_) {
    auto batch = loader_->next();
    if (!batch) return std::nullopt;
    return to_device(std::move(*batch), device_);
  }
  if (start_ >= size_) return std::nullopt;
  const auto len = std::min(batch_size_, size_ - start_);
  InputBatch b;
  b.inputs = normalize(set_.images.narrow(0, start_, len).to(device_), data_.mean, data_.std);
  b.labels = labels_.narrow(0, start_, len);
  b.indices = torch::arange(start_, start_ + len, torch::kInt64);
  start_ += len;
  return b;
}

TrainingBatches::TrainingBatches(const LongTailDataset& data, int64_t batch_size, uint64_t seed,
                                 torch::Device device, const std::string& sampler,
                                 int64_t num_epochs, int rank, int ranks)
    : data_(data),
      batch_size_(batch_size),
      size_(data.train.size()),
      used_(size_),
      rank_(rank),
      ranks_(ranks),
      device_(device),
      sampler_(sampler, data.train.labels, data.num_classes(), num_epochs) {
  check_batch_size(batch_size, "TrainingBatches");
  if (ranks < 1 || rank < 0 || rank >= ranks) {
    throw std::invalid_argument(fmt::format("TrainingBatches: rank {} of {}", rank, ranks));
  }
  if (batch_size < 2 * ranks) {
    throw std::invalid_argument(fmt::format(
        "train.batch_size {} is the global batch: {} processes need at least {} (2 images per "
        "process, for batch norm)",
        batch_size, ranks, 2 * ranks));
  }
  // A last batch that would give a process a single image is dropped each
  // epoch (DataLoader's drop_last, applied only then): batch norm cannot
  // train on one value per channel, as at the 1x1 last stage of an ImageNet
  // ResNet on small images.
  const int64_t last = size_ % batch_size;
  if (size_ > 1 && last > 0 && last < 2 * ranks) {
    used_ = size_ - last;
    spdlog::info(
        "the last batch of each epoch would hold {} of the {} training images{}, and batch "
        "norm cannot train on one image: it is dropped (different images each epoch; "
        "PyTorch's drop_last)",
        last, size_,
        ranks == 1 ? std::string() : fmt::format(", fewer than 2 for each of {} processes", ranks));
  }
  if (data.file_backed()) {
    auto options = loader_options(data, batch_size, true, seed, device);
    options.drop_last = used_ < size_;
    options.rank = rank;
    options.ranks = ranks;
    loader_ = std::make_unique<Loader>(data.train.files, data.train_transform, options);
  } else {
    labels_ = data.train.labels.to(device);
  }
}

int64_t TrainingBatches::batches_per_epoch() const {
  return (used_ + batch_size_ - 1) / batch_size_;
}

void TrainingBatches::start_epoch(int64_t epoch, at::Generator gen) {
  if (loader_) {
    if (sampler_.is_permutation()) {
      loader_->start_epoch(epoch);
    } else {
      const auto order = sampler_.epoch_indices(epoch, gen);
      loader_->start_epoch(epoch, {order.data_ptr<int64_t>(),
                                   order.data_ptr<int64_t>() + order.numel()});
    }
    return;
  }
  gen_ = std::move(gen);
  order_ = sampler_.epoch_indices(epoch, gen_).to(device_);
  start_ = 0;
}

void TrainingBatches::skip(int64_t batches) {
  if (batches < 0 || batches > batches_per_epoch()) {
    throw std::invalid_argument(fmt::format("TrainingBatches::skip: {} batches outside 0..{}",
                                            batches, batches_per_epoch()));
  }
  if (loader_) {
    loader_->skip_to(batches);
    return;
  }
  if (!order_.defined()) throw std::logic_error("TrainingBatches::skip before start_epoch");
  start_ = std::min(used_, batches * batch_size_);
}

std::optional<InputBatch> TrainingBatches::next() {
  if (loader_) {
    auto batch = loader_->next();
    if (!batch) return std::nullopt;
    const auto global = std::min(batch_size_, used_ - batch->index * batch_size_);
    auto b = to_device(std::move(*batch), device_);
    b.global_size = global;
    return b;
  }
  if (!order_.defined()) throw std::logic_error("TrainingBatches::next before start_epoch");
  if (start_ >= used_) return std::nullopt;
  const auto len = std::min(batch_size_, used_ - start_);
  auto idx = order_.narrow(0, start_, len);
  start_ += len;
  // The whole batch's crops and flips are drawn (as one process draws them),
  // and this rank's share of them applied.
  const auto draw = draw_crop_flip(len, 4, gen_);
  const auto [begin, end] = batch_share(len, rank_, ranks_);
  idx = idx.narrow(0, begin, end - begin);
  InputBatch b;
  b.inputs = normalize(
      crop_flip(data_.train.images.index_select(0, idx), 4, draw.oy.narrow(0, begin, end - begin),
                draw.ox.narrow(0, begin, end - begin), draw.flip.narrow(0, begin, end - begin)),
      data_.mean, data_.std);
  b.labels = labels_.index_select(0, idx);
  b.indices = idx;
  b.global_size = len;
  return b;
}

}  // namespace fsa::data
