#include "fsa/eval/meter.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace fsa::eval {
namespace {

TEST(Meter, OverallPerClassAndGroupsByHand) {
  AccuracyMeter m(3);
  // true:  0 0 0 1 1 2
  // pred:  0 0 1 1 2 2   → class 0: 2/3, class 1: 1/2, class 2: 1/1; overall 4/6
  m.update(torch::tensor({0L, 0L, 1L, 1L, 2L, 2L}), torch::tensor({0L, 0L, 0L, 1L, 1L, 2L}));
  EXPECT_DOUBLE_EQ(m.top1(), 4.0 / 6.0);
  const auto pc = m.per_class();
  EXPECT_DOUBLE_EQ(pc[0], 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(pc[1], 0.5);
  EXPECT_DOUBLE_EQ(pc[2], 1.0);
  EXPECT_DOUBLE_EQ(*m.group({false, true, true}), 2.0 / 3.0);
  EXPECT_EQ(m.confusion()[0][1].item<int64_t>(), 1);
  // Shot groups from training counts: 500 many, 50 medium, 5 few.
  const auto r = make_report(m, {500, 50, 5}, {true, false, false}, 0.0);
  EXPECT_DOUBLE_EQ(*r.many, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(*r.medium, 0.5);
  EXPECT_DOUBLE_EQ(*r.few, 1.0);
  EXPECT_DOUBLE_EQ(*r.tail, 2.0 / 3.0);
  const auto empty = make_report(m, {500, 400, 300}, {true, true, true}, 0.0);
  EXPECT_FALSE(empty.tail.has_value());
  EXPECT_FALSE(empty.few.has_value());
}

TEST(Meter, LogitsAndBadTargets) {
  AccuracyMeter m(2);
  m.update(torch::tensor({{0.1f, 0.9f}, {2.f, 1.f}}), torch::tensor({1L, 1L}));
  EXPECT_DOUBLE_EQ(m.top1(), 0.5);
  EXPECT_THROW(m.update(torch::tensor({0L}), torch::tensor({2L})), std::invalid_argument);
  EXPECT_THROW(m.update(torch::tensor({0L, 1L}), torch::tensor({1L})), std::invalid_argument);
}

}  // namespace
TEST(Meter, GroupTitlesAndPercentages) {
  Report r;
  r.head = 0.8310;  // tail, many, medium, few: no test images
  std::vector<std::string> titles;
  for (const auto& [name, value] : group_accuracies(r)) titles.push_back(group_title(name));
  EXPECT_EQ(titles, (std::vector<std::string>{"head classes", "tail classes", "many-shot (>100)",
                                              "medium-shot (20-100)", "few-shot (<20)"}));
  EXPECT_EQ(format_percent(r.head), "83.10%");
  EXPECT_EQ(format_percent(r.tail), "n/a");  // never "0.00%" for a group without images
  EXPECT_THROW(group_title("rare"), std::invalid_argument);
}

}  // namespace fsa::eval
