#include "fsa/eval/meter.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "fsa/data/long_tail.h"

namespace fsa::eval {

AccuracyMeter::AccuracyMeter(int64_t num_classes)
    : num_classes_(num_classes), confusion_(torch::zeros({num_classes, num_classes}, torch::kInt64)) {}

void AccuracyMeter::update(const torch::Tensor& logits_or_predictions,
                           const torch::Tensor& targets) {
  auto pred = logits_or_predictions.dim() == 2 ? logits_or_predictions.argmax(1)
                                               : logits_or_predictions;
  pred = pred.to(torch::kInt64);
  auto t = targets.to(pred.device(), torch::kInt64);
  if (pred.numel() != t.numel()) {
    throw std::invalid_argument(fmt::format("AccuracyMeter: {} predictions for {} targets",
                                            pred.numel(), t.numel()));
  }
  if (t.numel() == 0) return;
  // On a GPU the counts stay there (no host round trip per batch); targets
  // were checked when the data was read, predictions come from argmax.
  if (pred.device().is_cpu() &&
      (t.min().item<int64_t>() < 0 || t.max().item<int64_t>() >= num_classes_ ||
       pred.min().item<int64_t>() < 0 || pred.max().item<int64_t>() >= num_classes_)) {
    throw std::invalid_argument(fmt::format("AccuracyMeter: a class outside [0, {})",
                                            num_classes_));
  }
  if (confusion_.device() != pred.device()) confusion_ = confusion_.to(pred.device());
  confusion_.view(-1).index_add_(0, t * num_classes_ + pred, torch::ones_like(t));
}

torch::Tensor AccuracyMeter::confusion() const { return confusion_.cpu(); }

void AccuracyMeter::set_confusion(const torch::Tensor& confusion) {
  if (confusion.scalar_type() != torch::kInt64 ||
      confusion.sizes() != torch::IntArrayRef({num_classes_, num_classes_})) {
    throw std::invalid_argument(fmt::format("AccuracyMeter: counts of {} {} for {} classes",
                                            c10::toString(confusion.scalar_type()),
                                            c10::str(confusion.sizes()), num_classes_));
  }
  confusion_ = confusion.clone();
}

int64_t AccuracyMeter::count() const { return confusion_.sum().item<int64_t>(); }

double AccuracyMeter::top1() const {
  const auto n = count();
  return n == 0 ? 0.0 : double(confusion_.diagonal().sum().item<int64_t>()) / double(n);
}

std::vector<double> AccuracyMeter::per_class() const {
  std::vector<double> out(num_classes_);
  const auto cpu = confusion();
  auto c = cpu.accessor<int64_t, 2>();
  for (int64_t i = 0; i < num_classes_; ++i) {
    int64_t row = 0;
    for (int64_t j = 0; j < num_classes_; ++j) row += c[i][j];
    out[i] = row == 0 ? std::numeric_limits<double>::quiet_NaN() : double(c[i][i]) / double(row);
  }
  return out;
}

std::optional<double> AccuracyMeter::group(const std::vector<bool>& classes) const {
  const auto cpu = confusion();
  auto c = cpu.accessor<int64_t, 2>();
  int64_t correct = 0, total = 0;
  for (int64_t i = 0; i < num_classes_; ++i) {
    if (!classes.at(i)) continue;
    correct += c[i][i];
    for (int64_t j = 0; j < num_classes_; ++j) total += c[i][j];
  }
  if (total == 0) return std::nullopt;
  return double(correct) / double(total);
}

std::vector<std::pair<std::string, std::optional<double>>> group_accuracies(const Report& r) {
  return {{"head", r.head}, {"tail", r.tail}, {"many", r.many}, {"medium", r.medium},
          {"few", r.few}};
}

std::string format_percent(const std::optional<double>& accuracy) {
  return accuracy ? fmt::format("{:.2f}%", 100 * *accuracy) : std::string("n/a");
}

std::string group_title(const std::string& name) {
  if (name == "head") return "head classes";
  if (name == "tail") return "tail classes";
  if (name == "many") return "many-shot (>100)";
  if (name == "medium") return "medium-shot (20-100)";
  if (name == "few") return "few-shot (<20)";
  throw std::invalid_argument("no class group '" + name + "'");
}

Report make_report(const AccuracyMeter& meter, const std::vector<int64_t>& train_counts,
                   const std::vector<bool>& head, double loss) {
  Report r;
  r.top1 = meter.top1();
  r.per_class = meter.per_class();
  const auto c = train_counts.size();
  std::vector<bool> tail(c), many(c), medium(c), few(c);
  for (size_t i = 0; i < c; ++i) {
    tail[i] = !head[i];
    const auto g = data::shot_group(train_counts[i]);
    many[i] = g == data::ShotGroup::kMany;
    medium[i] = g == data::ShotGroup::kMedium;
    few[i] = g == data::ShotGroup::kFew;
  }
  r.head = meter.group(head);
  r.tail = meter.group(tail);
  r.many = meter.group(many);
  r.medium = meter.group(medium);
  r.few = meter.group(few);
  r.loss = loss;
  r.confusion = meter.confusion();
  return r;
}

}  // namespace fsa::eval
