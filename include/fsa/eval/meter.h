// Top-1 accuracy overall, per class and per class group (head/tail,
// many/medium/few-shot), from an accumulated confusion matrix.
#pragma once

#include <torch/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace fsa::eval {

/// Accumulates predictions; answers accuracies as fractions in [0, 1].
class AccuracyMeter {
 public:
  explicit AccuracyMeter(int64_t num_classes);

  /// logits float [N, C] (or predictions int64 [N]) against targets int64 [N].
  /// Throws std::invalid_argument on a shape mismatch or a target outside [0, C).
  void update(const torch::Tensor& logits_or_predictions, const torch::Tensor& targets);

  int64_t count() const;
  double top1() const;
  /// Per class: correct / images of that class; NaN for a class with none.
  std::vector<double> per_class() const;
  /// Accuracy over the images whose true class is in `classes` (mask of C);
  /// nullopt if no such image was seen.
  std::optional<double> group(const std::vector<bool>& classes) const;
  /// rows: true class, columns: predicted class; int64 [C, C] on the CPU
  /// (counts accumulate on the device of the predictions).
  torch::Tensor confusion() const;
  /// Replaces the counts (int64 [C, C]): those of several meters summed, as
  /// data-parallel evaluation all-reduces them. Throws std::invalid_argument
  /// for another shape or dtype.
  void set_confusion(const torch::Tensor& confusion);

 private:
  int64_t num_classes_;
  torch::Tensor confusion_;
};

/// The figures fsa reports for one model on one test set.
struct Report {
  double top1 = 0;
  std::vector<double> per_class;
  std::optional<double> head, tail, many, medium, few;
  double loss = 0;  ///< mean cross-entropy over the test set
  torch::Tensor confusion;
};

/// A report's class-group accuracies in reporting order, under the names
/// metrics.json, the epoch history (`test_<name>`) and TensorBoard
/// (`acc_test/<name>`) use: head, tail, many, medium, few (the shot groups
/// of data::shot_group). nullopt where the group has no test image.
std::vector<std::pair<std::string, std::optional<double>>> group_accuracies(const Report& r);

/// An accuracy (fraction) as "83.10%", or "n/a" for a group without test
/// images (null in metrics.json).
std::string format_percent(const std::optional<double>& accuracy);

/// The title a table gives group `name` of group_accuracies ("head classes",
/// "many-shot (>100)", ...). Throws std::invalid_argument for another name.
std::string group_title(const std::string& name);

/// Builds the report from a meter, the training set's class counts (shot
/// groups) and the head mask.
Report make_report(const AccuracyMeter& meter, const std::vector<int64_t>& train_counts,
                   const std::vector<bool>& head, double loss);

}  // namespace fsa::eval
