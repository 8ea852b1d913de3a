// Phase II's confusing-class ranking and Phase III's group sampler and batch
// against hand-worked examples.
#include "fsa/train/fsa_batch.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <set>

#include "fsa/models/backbone.h"
#include "fsa/train/phases.h"

namespace fsa::train {
namespace {

std::vector<int64_t> row(const torch::Tensor& ranked, int64_t t) {
  auto r = ranked[t].contiguous();
  return {r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel()};
}

TEST(ConfusingClasses, RankedByScoreOfTheTailClassWithTiesToTheLowerClass) {
  // S[c][t]: mean softmax of class t over images of class c. Column 3 (tail
  // class 3): classes 0, 1, 2 score 0.2, 0.5, 0.2; class 4 (tail) 0.6.
  auto s = torch::zeros({5, 5}, torch::kFloat32);
  s[0][3] = 0.2;
  s[1][3] = 0.5;
  s[2][3] = 0.2;
  s[4][3] = 0.6;
  s[3][3] = 0.9;  // the class itself never counts
  const std::vector<bool> head{true, true, true, false, false};
  // Head only: 1 (0.5), then the tie 0.2 between 0 and 2 goes to 0; −1 pads.
  EXPECT_EQ(row(rank_confusing(s, head, true), 3), (std::vector<int64_t>{1, 0, 2, -1}));
  // All classes: the tail class 4 (0.6) comes first.
  EXPECT_EQ(row(rank_confusing(s, head, false), 3), (std::vector<int64_t>{4, 1, 0, 2}));
  Analysis a;
  a.confusing = rank_confusing(s, head, true);
  EXPECT_EQ(confusing_classes(a, 3, 2), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(confusing_classes(a, 3, 9), (std::vector<int64_t>{1, 0, 2}));
}

// Classes 0, 1 head (images 0–3 and 4–6), 2 and 3 tail (7–8 and 9).
const std::vector<int64_t> kLabels{0, 0, 0, 0, 1, 1, 1, 2, 2, 3};
const std::vector<bool> kHead{true, true, false, false};

TEST(GroupSampler, GroupCompositionAndConfusingClassCycle) {
  // Tail class 2 is confused with [1, 0]; class 3 with [0].
  const std::vector<std::vector<int64_t>> confusing{{}, {}, {1, 0}, {0}};
  const int64_t na = 3;
  GroupSampler sampler(kLabels, kHead, confusing, na);
  EXPECT_EQ(sampler.tail(), (std::vector<int64_t>{7, 8, 9}));
  std::mt19937_64 rng(5);
  std::map<int64_t, int> head_hits;
  for (int r = 0; r < 200; ++r) {
    const auto d = sampler.draw({7, 9}, rng);
    ASSERT_EQ(d.tail.size(0), 2);
    ASSERT_EQ(d.other.size(0), 2 * na);
    ASSERT_EQ(d.head.size(0), 2 * (1 + na));
    EXPECT_EQ(d.tail[1].item<int64_t>(), 9);
    // Fused map a of a class-2 image uses confusing class a mod 2: 1, 0, 1.
    const int64_t expected_class[] = {1, 0, 1, 0, 0, 0};
    for (int64_t j = 0; j < 2 * na; ++j) {
      EXPECT_EQ(kLabels[size_t(d.other[j].item<int64_t>())], expected_class[j]) << "draw " << j;
    }
    for (int64_t j = 0; j < d.head.size(0); ++j) {
      const auto i = d.head[j].item<int64_t>();
      EXPECT_TRUE(kHead[size_t(kLabels[size_t(i)])]) << "head draw " << i;
      ++head_hits[i];
    }
  }
  // Head draws are uniform over the 7 head images: 1,600 draws, ≈ 229 each.
  ASSERT_EQ(head_hits.size(), 7u);
  for (const auto& [i, n] : head_hits) EXPECT_NEAR(n, 1600.0 / 7, 60) << "image " << i;
}

TEST(GroupSampler, RefusesWhatItCannotDraw) {
  EXPECT_THROW(GroupSampler(kLabels, {true, true, true, true}, {{}, {}, {}, {}}, 1),
               io::ConfigError);
  EXPECT_THROW(GroupSampler(kLabels, kHead, {{}, {}, {1}, {}}, 1), io::ConfigError);
  // A confusing class without training images.
  EXPECT_THROW(GroupSampler({0, 0, 2}, {true, true, false}, {{}, {}, {1}}, 1), io::ConfigError);
}

/// Ten random 32×32 images of kLabels (classes a..d, 4/3/2/1).
data::LongTailDataset ten_images() {
  data::LongTailDataset d;
  d.train.images = torch::randint(0, 256, {10, 3, 32, 32}, torch::kUInt8);
  d.train.labels = torch::tensor(kLabels, torch::kInt64);
  d.train.class_names = {"a", "b", "c", "d"};
  d.class_counts = {4, 3, 2, 1};
  d.head = kHead;
  d.mean = {0.5, 0.5, 0.5};
  d.std = {0.25, 0.25, 0.25};
  return d;
}

TEST(FsaBatchBuilder, LabelsAndLayoutOfABatch) {
  torch::manual_seed(0);
  auto model = models::make_model("resnet20", 4);
  model->eval();
  const auto d = ten_images();
  io::FinetuneConfig ft;
  ft.Na = 2;
  GroupSampler sampler(kLabels, kHead, {{}, {}, {1, 0}, {0}}, ft.Na);
  FsaBatchBuilder builder(*model, d, torch::kCPU, "layer3", ft, false, nullptr);
  std::mt19937_64 rng(1);
  const auto drawn = sampler.draw({8, 9}, rng);
  const auto b = builder.build(drawn, at::make_generator<at::CPUGeneratorImpl>(2));
  // [A_t (2) | fused (2·Na) | head (2·(1+Na))] = 2 + 4 + 6 maps of 64×8×8.
  ASSERT_EQ(b.maps.sizes(), torch::IntArrayRef({12, 64, 8, 8}));
  EXPECT_EQ(b.tail_images, 2);
  const auto head_labels = d.train.labels.index_select(0, drawn.head);
  const auto expected =
      torch::cat({torch::tensor({2, 3}), torch::tensor({2, 2, 3, 3}), head_labels});
  EXPECT_TRUE(b.labels.equal(expected));  // fused maps carry their own tail image's class
  EXPECT_TRUE(b.maps.narrow(0, 0, 2).equal(b.tail_maps));
  EXPECT_TRUE(b.maps.narrow(0, 2, 4).equal(b.fused.maps));
  EXPECT_EQ(b.tail_cams.sizes(), torch::IntArrayRef({2, 8, 8}));
  EXPECT_LE(b.tail_cams.max().item<double>(), 1.0);
  EXPECT_GE(b.other_cams.min().item<double>(), 0.0);
}

TEST(FsaBatchBuilder, SharesOfTheGroupsAreTheRowsOfTheWholeBatch) {
  // A data-parallel rank builds its groups of a batch with the draws of the
  // whole batch: the shares [0, 2) and [2, 3) of three groups are the whole
  // batch's rows of those groups (crops, flips and fusion masks alike).
  torch::manual_seed(0);
  auto model = models::make_model("resnet20", 4);
  model->eval();
  const auto d = ten_images();
  io::FinetuneConfig ft;
  ft.Na = 2;
  GroupSampler sampler(kLabels, kHead, {{}, {}, {1, 0}, {0}}, ft.Na);
  FsaBatchBuilder builder(*model, d, torch::kCPU, "layer3", ft, false, nullptr);
  std::mt19937_64 rng(1);
  const auto drawn = sampler.draw({9, 7, 8}, rng);
  const auto whole = builder.build(drawn, at::make_generator<at::CPUGeneratorImpl>(2));
  const int64_t na = ft.Na, groups = 3;
  for (const auto& [g0, g1] : {std::pair<int64_t, int64_t>{0, 2}, {2, 3}}) {
    const auto share =
        builder.build(drawn, at::make_generator<at::CPUGeneratorImpl>(2), true, std::pair{g0, g1});
    const auto rows = [&](const torch::Tensor& t) {  // the share's rows of the whole batch
      return torch::cat(
          {t.slice(0, g0, g1), t.slice(0, groups + g0 * na, groups + g1 * na),
           t.slice(0, groups * (1 + na) + g0 * (1 + na), groups * (1 + na) + g1 * (1 + na))});
    };
    EXPECT_EQ(share.tail_images, g1 - g0);
    EXPECT_TRUE(share.labels.equal(rows(whole.labels))) << g0;
    EXPECT_TRUE(share.fused.masks.equal(whole.fused.masks.slice(0, g0 * na, g1 * na))) << g0;
    EXPECT_TRUE(torch::allclose(share.maps, rows(whole.maps), 1e-5, 1e-6))
        << g0 << ": " << (share.maps - rows(whole.maps)).abs().max().item<double>();
  }
}

}  // namespace
}  // namespace fsa::train
