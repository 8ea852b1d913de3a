#include "fsa/train/confusing.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace fsa::train {
namespace {

/// Higher score first; of equal scores, the lower class.
bool better(const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

}  // namespace

ConfusingRanking::ConfusingRanking(std::vector<bool> candidates, int64_t keep)
    : candidates_(std::move(candidates)), keep_(keep), best_(candidates_.size()) {
  if (keep < 1) {
    throw std::invalid_argument("ConfusingRanking: keep must be at least 1, got " +
                                std::to_string(keep));
  }
}

void ConfusingRanking::add_row(int64_t c, const torch::Tensor& row) {
  const int64_t n = num_classes();
  if (c < 0 || c >= n || row.dim() != 1 || row.size(0) != n) {
    throw std::invalid_argument("ConfusingRanking: row " + std::to_string(c) + " of " +
                                std::to_string(n) + " classes must be float [" + std::to_string(n) +
                                "]");
  }
  if (!candidates_[static_cast<size_t>(c)]) return;
  const auto r = row.to(torch::kFloat).contiguous();
  const float* s = r.data_ptr<float>();
  for (int64_t t = 0; t < n; ++t) {
    if (t != c) offer(t, c, s[t]);
  }
}

void ConfusingRanking::offer(int64_t t, int64_t c, float s) {
  auto& best = best_[static_cast<size_t>(t)];
  const std::pair<float, int64_t> entry{s, c};
  if (static_cast<int64_t>(best.size()) == keep_ && !better(entry, best.back())) return;
  best.insert(std::upper_bound(best.begin(), best.end(), entry, better), entry);
  if (static_cast<int64_t>(best.size()) > keep_) best.pop_back();
}

torch::Tensor ConfusingRanking::classes() const {
  auto out = torch::full({num_classes(), keep_}, -1, torch::kInt64);
  auto a = out.accessor<int64_t, 2>();
  for (size_t t = 0; t < best_.size(); ++t) {
    for (size_t i = 0; i < best_[t].size(); ++i) a[t][i] = best_[t][i].second;
  }
  return out;
}

torch::Tensor ConfusingRanking::scores() const {
  auto out =
      torch::full({num_classes(), keep_}, std::numeric_limits<float>::quiet_NaN(), torch::kFloat);
  auto a = out.accessor<float, 2>();
  for (size_t t = 0; t < best_.size(); ++t) {
    for (size_t i = 0; i < best_[t].size(); ++i) a[t][i] = best_[t][i].first;
  }
  return out;
}

}  // namespace fsa::train
