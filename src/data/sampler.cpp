#include "fsa/data/sampler.h"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

namespace fsa::data {

torch::Tensor sampler_class_probabilities(const std::string& sampler,
                                          const std::vector<int64_t>& counts, int64_t epoch,
                                          int64_t num_epochs) {
  auto n = torch::tensor(counts, torch::kFloat64);
  if (counts.empty() || n.sum().item<double>() <= 0) {
    throw std::invalid_argument("train.sampler: the training set has no images");
  }
  auto power = [&](double q) {
    // Classes without images are never drawn, whatever q is.
    auto p = torch::where(n > 0, torch::pow(n, q), torch::zeros_like(n));
    return p / p.sum();
  };
  if (sampler == "instance_balanced") return power(1.0);
  if (sampler == "class_balanced") return power(0.0);
  if (sampler == "square_root") return power(0.5);
  if (sampler == "progressive") {
    const double t = num_epochs > 0 ? double(epoch) / double(num_epochs) : 0.0;
    return (1.0 - t) * power(1.0) + t * power(0.0);
  }
  throw std::invalid_argument(
      fmt::format("train.sampler '{}': expected instance_balanced, "
                  "class_balanced, square_root or progressive",
                  sampler));
}

ClassSampler::ClassSampler(std::string name, const torch::Tensor& labels, int64_t num_classes,
                           int64_t num_epochs)
    : name_(std::move(name)), size_(labels.size(0)), num_epochs_(num_epochs) {
  sampler_class_probabilities(name_, {1}, 0, 1);  // checks the name
  if (is_permutation()) return;                   // a permutation needs no class structure
  auto y = labels.to(torch::kCPU, torch::kInt64).contiguous();
  counts_.assign(size_t(num_classes), 0);
  const auto* v = y.data_ptr<int64_t>();
  for (int64_t i = 0; i < size_; ++i) {
    if (v[i] < 0 || v[i] >= num_classes) {
      throw std::invalid_argument(
          fmt::format("train.sampler {}: training image {} has label {}, "
                      "outside the {} classes",
                      name_, i, v[i], num_classes));
    }
    ++counts_[size_t(v[i])];
  }
  sampler_class_probabilities(name_, counts_, 0, num_epochs_);  // some class has images
  // A stable sort keeps each class's images in index order.
  members_ = std::get<1>(y.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
  std::vector<int64_t> offsets(size_t(num_classes), 0);
  for (size_t c = 1; c < offsets.size(); ++c) offsets[c] = offsets[c - 1] + counts_[c - 1];
  offsets_ = torch::tensor(offsets, torch::kInt64);
}

torch::Tensor ClassSampler::epoch_indices(int64_t epoch, at::Generator& gen) const {
  if (is_permutation()) return torch::randperm(size_, gen, torch::kInt64);
  const auto p = sampler_class_probabilities(name_, counts_, epoch, num_epochs_);
  const auto classes = torch::multinomial(p, size_, /*replacement=*/true, gen);
  const auto counts = torch::tensor(counts_, torch::kInt64).index_select(0, classes);
  // floor(u·n_c) is uniform over 0..n_c−1; u < 1, so it never reaches n_c.
  const auto u = torch::rand({size_}, gen, torch::kFloat64);
  const auto within = (u * counts.to(torch::kFloat64)).floor().to(torch::kInt64);
  return members_.index_select(0, offsets_.index_select(0, classes) + within);
}

}  // namespace fsa::data
