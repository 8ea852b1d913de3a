// The confusing classes of every class, ranked as the rows of Phase II's
// score matrix arrive (METHOD.md, Phase II), in memory proportional to
// C × keep rather than the C² of the matrix (iNaturalist 2018: 8,142
// classes; issue 13).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace fsa::train {

/// For each class t, the `keep` classes c ≠ t among the candidates with the
/// highest S[c][t] (the mean softmax score of class t over the training
/// images of class c), best first, ties by lower c: the order in which a
/// stable sort of all candidates by S[c][t] descending lists them.
class ConfusingRanking {
 public:
  /// candidates[c]: class c may be a confusing class (the head classes, or
  /// every class). Throws std::invalid_argument if keep < 1.
  ConfusingRanking(std::vector<bool> candidates, int64_t keep);

  int64_t num_classes() const { return static_cast<int64_t>(best_.size()); }
  int64_t keep() const { return keep_; }

  /// Row c of the score matrix: float32 [C] on the CPU, S[c][t] for every t.
  /// Offers c to every class t ≠ c when c is a candidate. Throws
  /// std::invalid_argument on a row of another length or c out of range.
  void add_row(int64_t c, const torch::Tensor& row);

  /// Offers class c, with score s = S[c][t], as a confusing class of t
  /// (rows from another process; order does not matter).
  void offer(int64_t t, int64_t c, float s);

  /// int64 [C, keep]: row t holds t's confusing classes best first, −1 after
  /// the last (fewer than `keep` candidates).
  torch::Tensor classes() const;

  /// float32 [C, keep]: S[c][t] of each entry of classes(), NaN where −1.
  torch::Tensor scores() const;

 private:
  std::vector<bool> candidates_;
  int64_t keep_;
  std::vector<std::vector<std::pair<float, int64_t>>> best_;  // per t: (S[c][t], c), best first
};

}  // namespace fsa::train
