#include "fsa/data/long_tail.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace fsa::data {
namespace {

TEST(LongTailCounts, Cifar10AtImbalance100MatchesMethod) {
  // METHOD.md lists these for CIFAR-10-LT at IF = 100.
  const std::vector<int64_t> expected{5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50};
  const auto counts = long_tail_counts(5000, 10, 100);
  EXPECT_EQ(counts, expected);
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), int64_t{0}), 12406);
}

TEST(LongTailCounts, HundredClassesAgreeWithLongDoubleFormula) {
  for (double im : {10.0, 50.0, 100.0, 200.0}) {
    const auto counts = long_tail_counts(500, 100, im);
    ASSERT_EQ(counts.size(), 100u);
    EXPECT_EQ(counts.front(), 500);
    EXPECT_EQ(counts.back(), static_cast<int64_t>(std::floor(500.0 / im)));
    for (int i = 0; i < 100; ++i) {
      const long double v = 500.0L * std::pow(1.0L / im, i / 99.0L);
      EXPECT_NEAR(static_cast<double>(counts[i]), std::floor(static_cast<double>(v)), 0.0)
          << "class " << i << " at IF " << im;
    }
  }
  // IF 100 over 100 classes: 10,847 images in the literature's CIFAR-100-LT.
  const auto c = long_tail_counts(500, 100, 100);
  EXPECT_EQ(std::accumulate(c.begin(), c.end(), int64_t{0}), 10847);
}

TEST(LongTailCounts, RejectsImbalanceBelowOne) {
  EXPECT_THROW(long_tail_counts(10, 3, 0.5), std::invalid_argument);
  EXPECT_THROW(long_tail_counts(10, 3, -3), std::invalid_argument);
}

TEST(Subsample, KeepsTargetCountsSeededAndSorted) {
  std::vector<int64_t> labels;
  for (int i = 0; i < 1000; ++i) labels.push_back(i % 4);  // 250 per class
  const auto kept = subsample_long_tail(labels, 4, 10, 7);
  std::vector<int64_t> kept_labels;
  for (auto i : kept) kept_labels.push_back(labels[i]);
  EXPECT_EQ(class_counts(kept_labels, 4), long_tail_counts(250, 4, 10));
  EXPECT_TRUE(std::is_sorted(kept.begin(), kept.end()));
  EXPECT_EQ(kept, subsample_long_tail(labels, 4, 10, 7));
  EXPECT_NE(kept, subsample_long_tail(labels, 4, 10, 8));
}

TEST(HoldOut, StratifiedCountsDisjointAndSeeded) {
  // Class 0: 10 images, class 1: 3, class 2: 1, interleaved.
  const std::vector<int64_t> labels{0, 1, 0, 0, 2, 0, 1, 0, 0, 0, 1, 0, 0, 0};
  const auto split = hold_out_validation(labels, 3, 0.2, 5);
  std::vector<int64_t> val_labels, train_labels;
  for (auto i : split.val) val_labels.push_back(labels[i]);
  for (auto i : split.train) train_labels.push_back(labels[i]);
  // round(0.2·10) = 2; round(0.2·3) = 1 (at least one); one image stays for training.
  EXPECT_EQ(class_counts(val_labels, 3), (std::vector<int64_t>{2, 1, 0}));
  EXPECT_EQ(class_counts(train_labels, 3), (std::vector<int64_t>{8, 2, 1}));
  std::vector<int64_t> all = split.train;
  all.insert(all.end(), split.val.begin(), split.val.end());
  std::sort(all.begin(), all.end());
  std::vector<int64_t> expected(labels.size());
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(all, expected);  // a partition
  EXPECT_TRUE(std::is_sorted(split.val.begin(), split.val.end()));
  EXPECT_TRUE(std::is_sorted(split.train.begin(), split.train.end()));
  EXPECT_EQ(split.val, hold_out_validation(labels, 3, 0.2, 5).val);
  // Half of a class never takes its last image: k = min(round(f·n), n − 1).
  const std::vector<int64_t> two{0, 0};
  EXPECT_EQ(hold_out_validation(two, 1, 0.5, 1).val.size(), 1u);
  EXPECT_TRUE(hold_out_validation(labels, 3, 0.0, 5).val.empty());
  EXPECT_THROW(hold_out_validation(labels, 3, 0.6, 5), std::invalid_argument);
  EXPECT_THROW(hold_out_validation({0, 3}, 3, 0.1, 5), std::invalid_argument);
}

TEST(HoldOut, DifferentSeedsHoldOutDifferentImages) {
  std::vector<int64_t> labels(200, 0);
  EXPECT_NE(hold_out_validation(labels, 1, 0.1, 1).val, hold_out_validation(labels, 1, 0.1, 2).val);
}

TEST(HeadTail, Cifar10Imbalance100HeadIsFirstFiveClasses) {
  // 5000+2997+1796+1077 = 10870 < 0.9·12406 = 11165.4 ≤ 10870+645: five classes.
  const auto head = head_classes(long_tail_counts(5000, 10, 100), 0.9, {});
  const std::vector<bool> expected{true, true, true, true, true, false, false, false, false, false};
  EXPECT_EQ(head, expected);
}

TEST(HeadTail, TiesGoToLowerIndexAndExplicitListWins) {
  // Counts 5,5,5,5: 0.5 of 20 needs two classes; ties → classes 0 and 1.
  const auto head = head_classes({5, 5, 5, 5}, 0.5, {});
  EXPECT_EQ(head, (std::vector<bool>{true, true, false, false}));
  const auto explicit_head = head_classes({5, 5, 5, 5}, 0.5, {3});
  EXPECT_EQ(explicit_head, (std::vector<bool>{false, false, false, true}));
  EXPECT_THROW(head_classes({5, 5}, 0.5, {2}), std::invalid_argument);
}

TEST(ShotGroups, Boundaries) {
  EXPECT_EQ(shot_group(101), ShotGroup::kMany);
  EXPECT_EQ(shot_group(100), ShotGroup::kMedium);
  EXPECT_EQ(shot_group(20), ShotGroup::kMedium);
  EXPECT_EQ(shot_group(19), ShotGroup::kFew);
}

TEST(Fingerprint, NamesWhatDiffers) {
  Fingerprint a{"CIFAR-10-LT", 100, 0, 12406, "abc"};
  Fingerprint b = a;
  EXPECT_EQ(a.differences(b), "");
  b.imbalance_factor = 50;
  b.num_samples = 13996;
  const auto d = a.differences(b);
  EXPECT_NE(d.find("imbalance factor 100 vs 50"), std::string::npos) << d;
  EXPECT_NE(d.find("12406 vs 13996"), std::string::npos) << d;
  EXPECT_NE(hash_samples({1, 2}, {0, 1}), hash_samples({1, 3}, {0, 1}));
}

}  // namespace
}  // namespace fsa::data
