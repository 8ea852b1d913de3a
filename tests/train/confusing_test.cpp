// ConfusingRanking against a stable sort of the whole score matrix.
#include "fsa/train/confusing.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

namespace {

using fsa::train::ConfusingRanking;

/// Row t of the expected table: the candidates c ≠ t by S[c][t] descending
/// (stable: ties by lower c), the first `keep`, then −1.
torch::Tensor by_sorting(const torch::Tensor& s, const std::vector<bool>& candidates,
                         int64_t keep) {
  const int64_t n = s.size(0);
  auto out = torch::full({n, keep}, -1, torch::kInt64);
  for (int64_t t = 0; t < n; ++t) {
    std::vector<int64_t> c;
    for (int64_t k = 0; k < n; ++k) {
      if (k != t && candidates[size_t(k)]) c.push_back(k);
    }
    std::stable_sort(c.begin(), c.end(), [&](int64_t a, int64_t b) {
      return s[a][t].item<float>() > s[b][t].item<float>();
    });
    for (int64_t i = 0; i < std::min<int64_t>(keep, int64_t(c.size())); ++i)
      out[t][i] = c[size_t(i)];
  }
  return out;
}

TEST(ConfusingRanking, EqualsAStableSortOfEachColumn) {
  torch::manual_seed(5);
  const int64_t n = 23;
  // Scores rounded to tenths: many ties, which go to the lower class.
  const auto s = (torch::rand({n, n}) * 10).round() / 10;
  std::vector<bool> head(size_t(n), false);
  for (int64_t c : {0, 2, 3, 7, 11, 12, 19}) head[size_t(c)] = true;
  for (const auto& candidates : {std::vector<bool>(size_t(n), true), head}) {
    for (int64_t keep : {int64_t{1}, int64_t{3}, int64_t{10}, n - 1}) {
      ConfusingRanking r(candidates, keep);
      for (int64_t c = n - 1; c >= 0; --c) r.add_row(c, s[c]);  // any row order
      EXPECT_TRUE(torch::equal(r.classes(), by_sorting(s, candidates, keep))) << "keep " << keep;
      // Each kept score is S[c][t]; NaN exactly where there is no class.
      const auto classes = r.classes();
      const auto scores = r.scores();
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t i = 0; i < keep; ++i) {
          const auto c = classes[t][i].item<int64_t>();
          if (c < 0) {
            EXPECT_TRUE(std::isnan(scores[t][i].item<float>()));
          } else {
            EXPECT_EQ(scores[t][i].item<float>(), s[c][t].item<float>());
          }
        }
      }
    }
  }
}

TEST(ConfusingRanking, RankingsOfDisjointRowsMergeIntoTheWhole) {
  torch::manual_seed(6);
  const int64_t n = 17, keep = 4;
  const auto s = (torch::rand({n, n}) * 8).round() / 8;
  const std::vector<bool> all(size_t(n), true);
  ConfusingRanking low(all, keep), high(all, keep), merged(all, keep);
  for (int64_t c = 0; c < n; ++c) (c < 9 ? low : high).add_row(c, s[c]);
  for (const auto* part : {&high, &low}) {
    const auto classes = part->classes();
    const auto scores = part->scores();
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t i = 0; i < keep && classes[t][i].item<int64_t>() >= 0; ++i) {
        merged.offer(t, classes[t][i].item<int64_t>(), scores[t][i].item<float>());
      }
    }
  }
  EXPECT_TRUE(torch::equal(merged.classes(), by_sorting(s, all, keep)));
}

TEST(ConfusingRanking, RejectsABadRowOrKeep) {
  EXPECT_THROW(ConfusingRanking(std::vector<bool>(3, true), 0), std::invalid_argument);
  ConfusingRanking r(std::vector<bool>(3, true), 2);
  EXPECT_THROW(r.add_row(3, torch::zeros({3})), std::invalid_argument);
  EXPECT_THROW(r.add_row(0, torch::zeros({4})), std::invalid_argument);
}

}  // namespace
