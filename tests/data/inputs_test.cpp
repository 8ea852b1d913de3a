// Network input from resident and file-backed splits (data/inputs.h),
// checked against pixel values computed by hand from the images the tests
// write.
#include "fsa/data/inputs.h"
#include "fsa/data/transforms.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <opencv2/imgcodecs.hpp>
#include <fmt/format.h>
#include <filesystem>
#include <set>

#include "test_util.h"

namespace fsa::data {
namespace {

const std::vector<double> kMean{0.5, 0.25, 0.75}, kStd{0.5, 0.25, 0.125};

/// Pixel (y, x) of image i, channel c (RGB): distinct per image and place.
uint8_t pixel(int i, int y, int x, int c) { return uint8_t((37 * i + 11 * y + 5 * x + 60 * c) % 256); }

/// (v/255 − mean[c]) / std[c] in double: the normalisation by hand.
double normalised(uint8_t v, int c) { return (v / 255.0 - kMean[c]) / kStd[c]; }

/// A file-backed dataset of n lossless PNGs of side × side pixels, label i % 3;
/// crops of `side` so that evaluation keeps every pixel.
LongTailDataset png_dataset(const std::string& dir, int n, int side, int workers) {
  LongTailDataset d;
  d.train.class_names = {"a", "b", "c"};
  std::vector<int64_t> labels;
  for (int i = 0; i < n; ++i) {
    cv::Mat m(side, side, CV_8UC3);
    for (int y = 0; y < side; ++y) {
      for (int x = 0; x < side; ++x) {
        // OpenCV stores BGR.
        m.at<cv::Vec3b>(y, x) = cv::Vec3b(pixel(i, y, x, 2), pixel(i, y, x, 1), pixel(i, y, x, 0));
      }
    }
    const auto path = dir + "/img" + std::to_string(i) + ".png";
    EXPECT_TRUE(cv::imwrite(path, m));
    d.train.files.push_back({path, i % 3});
    labels.push_back(i % 3);
  }
  d.train.labels = torch::tensor(labels, torch::kInt64);
  d.test = d.train;
  d.mean = kMean;
  d.std = kStd;
  d.train_transform = ImageTransform::imagenet_train(side);
  d.eval_transform = ImageTransform::imagenet_eval(side);
  d.eval_transform.resize_size = side;
  for (auto* t : {&d.train_transform, &d.eval_transform}) {
    t->mean = kMean;
    t->std = kStd;
  }
  d.workers = workers;
  return d;
}

void expect_image(const torch::Tensor& x, int i, int side) {
  ASSERT_EQ(x.sizes(), torch::IntArrayRef({3, side, side}));
  double worst = 0;
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < side; ++y) {
      for (int xx = 0; xx < side; ++xx) {
        worst = std::max(worst, std::abs(x[c][y][xx].item<double>() - normalised(pixel(i, y, xx, c), c)));
      }
    }
  }
  EXPECT_LT(worst, 1e-5) << "image " << i;
}

TEST(Inputs, FileBackedEvaluationInputIsTheNormalisedImage) {
  fsa::testing::TempDir dir;
  const auto d = png_dataset(dir.path(), 5, 8, 2);
  const auto x = eval_inputs(d, d.test, torch::tensor({3, 0}, torch::kInt64), torch::kCPU);
  ASSERT_EQ(x.sizes(), torch::IntArrayRef({2, 3, 8, 8}));
  expect_image(x[0], 3, 8);
  expect_image(x[1], 0, 8);
  const auto pixels = picture_pixels(d, d.test, torch::tensor({4}, torch::kInt64));
  ASSERT_EQ(pixels.sizes(), torch::IntArrayRef({1, 3, 8, 8}));
  EXPECT_EQ(pixels.scalar_type(), torch::kUInt8);
  EXPECT_EQ(pixels[0][1][2][5].item<int>(), pixel(4, 2, 5, 1));
}

TEST(Inputs, FileBackedSequentialPassDeliversEveryImageInOrder) {
  fsa::testing::TempDir dir;
  const auto d = png_dataset(dir.path(), 7, 8, 2);
  SequentialBatches input(d, d.test, 3, torch::kCPU);
  EXPECT_EQ(input.batches(), 3);
  int64_t next_index = 0;
  while (auto b = input.next()) {
    for (int64_t j = 0; j < b->labels.size(0); ++j, ++next_index) {
      EXPECT_EQ(b->indices[j].item<int64_t>(), next_index);
      EXPECT_EQ(b->labels[j].item<int64_t>(), next_index % 3);
      expect_image(b->inputs[j], int(next_index), 8);
    }
  }
  EXPECT_EQ(next_index, 7);
}

TEST(Inputs, ResidentSequentialPassIsTheNormalisedImages) {
  LongTailDataset d;
  d.test.images = torch::randint(0, 256, {5, 3, 4, 4}, torch::kUInt8);
  d.test.labels = torch::tensor({0, 1, 2, 0, 1}, torch::kInt64);
  d.mean = kMean;
  d.std = kStd;
  SequentialBatches input(d, d.test, 2, torch::kCPU);
  int64_t seen = 0;
  while (auto b = input.next()) {
    for (int64_t j = 0; j < b->labels.size(0); ++j, ++seen) {
      EXPECT_EQ(b->labels[j].item<int64_t>(), d.test.labels[seen].item<int64_t>());
      for (int c = 0; c < 3; ++c) {
        const auto v = uint8_t(d.test.images[seen][c][1][2].item<int>());
        EXPECT_NEAR(b->inputs[j][c][1][2].item<double>(), normalised(v, c), 1e-5);
      }
    }
  }
  EXPECT_EQ(seen, 5);
}

/// Every index once per epoch; batches identical for the same seed whatever
/// the number of workers.
std::vector<torch::Tensor> epoch_inputs(TrainingBatches& input, int64_t epoch,
                                        std::multiset<int64_t>* seen) {
  input.start_epoch(epoch, at::make_generator<at::CPUGeneratorImpl>(epoch));
  std::vector<torch::Tensor> out;
  while (auto b = input.next()) {
    for (int64_t j = 0; j < b->indices.size(0); ++j) {
      seen->insert(b->indices[j].item<int64_t>());
      EXPECT_EQ(b->labels[j].item<int64_t>(), b->indices[j].item<int64_t>() % 3);
    }
    out.push_back(b->inputs);
  }
  return out;
}

TEST(Inputs, FileBackedTrainingEpochsAreCompleteAndReproducible) {
  fsa::testing::TempDir dir;
  auto d1 = png_dataset(dir.path(), 10, 16, 1);
  auto d2 = d1;
  d2.workers = 2;
  TrainingBatches a(d1, 4, 7, torch::kCPU), b(d2, 4, 7, torch::kCPU);
  EXPECT_EQ(a.batches_per_epoch(), 3);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::multiset<int64_t> seen_a, seen_b;
    const auto xa = epoch_inputs(a, epoch, &seen_a), xb = epoch_inputs(b, epoch, &seen_b);
    EXPECT_EQ(seen_a, (std::multiset<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    EXPECT_EQ(seen_a, seen_b);
    ASSERT_EQ(xa.size(), xb.size());
    for (size_t k = 0; k < xa.size(); ++k) EXPECT_TRUE(torch::equal(xa[k], xb[k])) << k;
  }
}

/// n random 8×8 resident training images, label i % 3.
LongTailDataset resident_dataset(int64_t n) {
  LongTailDataset d;
  d.train.images = torch::randint(0, 256, {n, 3, 8, 8}, torch::kUInt8);
  d.train.labels = torch::arange(n, torch::kInt64).remainder(3);
  d.mean = kMean;
  d.std = kStd;
  return d;
}

TEST(Inputs, ResidentTrainingEpochsAreCompleteAndFollowTheGenerator) {
  const auto d = resident_dataset(10);
  TrainingBatches a(d, 4, 0, torch::kCPU), b(d, 4, 0, torch::kCPU);
  std::multiset<int64_t> seen_a, seen_b;
  const auto xa = epoch_inputs(a, 3, &seen_a), xb = epoch_inputs(b, 3, &seen_b);
  std::multiset<int64_t> all;
  for (int64_t i = 0; i < 10; ++i) all.insert(i);
  EXPECT_EQ(seen_a, all);
  ASSERT_EQ(xa.size(), 3u);
  for (size_t k = 0; k < xa.size(); ++k) EXPECT_TRUE(torch::equal(xa[k], xb[k]));
  // Phase I's draws: the permutation, then each batch's crops and flips, all
  // from the epoch's generator.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const auto order = torch::randperm(10, gen, torch::kInt64);
  const auto picked = d.train.images.index_select(0, order.narrow(0, 0, 4));
  const auto first = normalize(random_crop_flip(picked, 4, gen), kMean, kStd);
  EXPECT_TRUE(torch::equal(first, xa[0]));
}

TEST(Inputs, SkippingBatchesContinuesTheEpochAsItWouldHaveGone) {
  // A resume within an epoch: start the epoch, put the generator back to its
  // state after k batches, skip k; what follows is batches k+1... of the
  // uninterrupted epoch. Resident (draws from the generator) and file-backed
  // with a class-balanced sampler (its own order, images seeded by position).
  const auto resident = resident_dataset(10);
  fsa::testing::TempDir dir;
  const auto files = png_dataset(dir.path(), 10, 16, 2);
  for (const auto* d : std::vector<const LongTailDataset*>{&resident, &files}) {
    const auto sampler = d == &resident ? "instance_balanced" : "class_balanced";
    TrainingBatches whole(*d, 4, 7, torch::kCPU, sampler), rest(*d, 4, 7, torch::kCPU, sampler);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
    whole.start_epoch(2, gen);
    std::vector<InputBatch> expected;
    at::Tensor state_after_one;
    while (auto b = whole.next()) {
      expected.push_back(*b);
      if (expected.size() == 1) state_after_one = gen.get_state();
    }
    ASSERT_EQ(expected.size(), 3u);
    auto gen2 = at::make_generator<at::CPUGeneratorImpl>(5);
    rest.start_epoch(2, gen2);
    gen2.set_state(state_after_one);
    rest.skip(1);
    for (size_t k = 1; k < 3; ++k) {
      const auto b = rest.next();
      ASSERT_TRUE(b) << sampler << " batch " << k;
      EXPECT_TRUE(torch::equal(b->indices, expected[k].indices)) << sampler << " batch " << k;
      EXPECT_TRUE(torch::equal(b->inputs, expected[k].inputs)) << sampler << " batch " << k;
    }
    EXPECT_FALSE(rest.next());
    EXPECT_THROW(rest.skip(4), std::invalid_argument);
  }
}

TEST(Inputs, ALastBatchOfOneImageIsDropped) {
  // Batch norm cannot train on one image: 9 images in batches of 4 make two
  // batches (DataLoader's drop_last), 10 make three (the last of 2 is kept).
  auto d = resident_dataset(9);
  TrainingBatches resident(d, 4, 0, torch::kCPU);
  EXPECT_EQ(resident.batches_per_epoch(), 2);
  std::set<int64_t> left_out;
  for (int64_t epoch = 0; epoch < 6; ++epoch) {
    std::multiset<int64_t> seen;
    EXPECT_EQ(epoch_inputs(resident, epoch, &seen).size(), 2u);
    ASSERT_EQ(seen.size(), 8u);
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 8u);  // no image twice
    for (int64_t i = 0; i < 9; ++i) {
      if (!seen.count(i)) left_out.insert(i);
    }
  }
  EXPECT_GT(left_out.size(), 1u);  // not always the same image

  fsa::testing::TempDir dir;
  const auto files = png_dataset(dir.path(), 9, 16, 1);
  TrainingBatches file_backed(files, 4, 7, torch::kCPU);
  EXPECT_EQ(file_backed.batches_per_epoch(), 2);
  std::multiset<int64_t> seen;
  EXPECT_EQ(epoch_inputs(file_backed, 0, &seen).size(), 2u);
  EXPECT_EQ(seen.size(), 8u);

  d.train.images = torch::randint(0, 256, {10, 3, 8, 8}, torch::kUInt8);
  d.train.labels = torch::arange(10, torch::kInt64).remainder(3);
  EXPECT_EQ(TrainingBatches(d, 4, 0, torch::kCPU).batches_per_epoch(), 3);
}

/// Every batch of an epoch of `ranks` processes: each rank's share
/// concatenated in rank order, with the global size each rank was told.
std::vector<std::pair<torch::Tensor, torch::Tensor>> shared_epoch(const LongTailDataset& d,
                                                                  int64_t batch, int ranks,
                                                                  int64_t epoch) {
  std::vector<std::vector<InputBatch>> per_rank(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    TrainingBatches input(d, batch, 7, torch::kCPU, "instance_balanced", 1, r, ranks);
    input.start_epoch(epoch, at::make_generator<at::CPUGeneratorImpl>(epoch));
    while (auto b = input.next()) per_rank[static_cast<size_t>(r)].push_back(*b);
  }
  std::vector<std::pair<torch::Tensor, torch::Tensor>> out;
  for (size_t k = 0; k < per_rank[0].size(); ++k) {
    std::vector<torch::Tensor> x, idx;
    int64_t total = 0;
    for (int r = 0; r < ranks; ++r) {
      const auto& b = per_rank[static_cast<size_t>(r)].at(k);
      EXPECT_GE(b.indices.size(0), 2) << "rank " << r << " batch " << k;
      x.push_back(b.inputs);
      idx.push_back(b.indices);
      total += b.indices.size(0);
      EXPECT_EQ(b.global_size, per_rank[0][k].global_size);
    }
    EXPECT_EQ(total, per_rank[0][k].global_size) << "batch " << k;
    out.emplace_back(torch::cat(x), torch::cat(idx));
  }
  return out;
}

TEST(Inputs, TheRanksSharesTileEveryBatchOfOneProcessWithItsAugmentation) {
  fsa::testing::TempDir dir;
  // 23 images in batches of 8 for 3 processes: 3+3+2 of each batch, and the
  // last batch of 7 as 3+2+2. File-backed and resident.
  for (const auto& d : {resident_dataset(23), png_dataset(dir.path(), 23, 8, 2)}) {
    for (int64_t epoch : {0, 1}) {
      const auto one = shared_epoch(d, 8, 1, epoch), three = shared_epoch(d, 8, 3, epoch);
      ASSERT_EQ(one.size(), 3u);
      ASSERT_EQ(three.size(), 3u);
      std::set<int64_t> seen;
      for (size_t k = 0; k < one.size(); ++k) {
        EXPECT_TRUE(torch::equal(one[k].second, three[k].second)) << "batch " << k;
        EXPECT_TRUE(torch::equal(one[k].first, three[k].first)) << "batch " << k;
        for (int64_t j = 0; j < three[k].second.size(0); ++j) {
          seen.insert(three[k].second[j].item<int64_t>());
        }
      }
      EXPECT_EQ(seen.size(), 23u);  // the epoch covers the set exactly once
    }
  }
  // 21 images: a last batch of 5 would leave a rank one image; it is dropped.
  const auto d = resident_dataset(21);
  EXPECT_EQ(shared_epoch(d, 8, 3, 0).size(), 2u);
  EXPECT_EQ(TrainingBatches(d, 8, 0, torch::kCPU, "instance_balanced", 1, 2, 3).batches_per_epoch(),
            2);
  EXPECT_THROW(TrainingBatches(d, 5, 0, torch::kCPU, "instance_balanced", 1, 0, 3),
               std::invalid_argument);  // under 2 images per process
  EXPECT_EQ(batch_share(7, 0, 3), (std::pair<int64_t, int64_t>{0, 3}));
  EXPECT_EQ(batch_share(7, 2, 3), (std::pair<int64_t, int64_t>{5, 7}));
}

TEST(Inputs, FileBackedAugmentedInputIsSeededFromTheGenerator) {
  fsa::testing::TempDir dir;
  const auto d = png_dataset(dir.path(), 4, 16, 2);
  const auto idx = torch::tensor({2, 1, 2}, torch::kInt64);
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(11);
  auto g2 = at::make_generator<at::CPUGeneratorImpl>(11);
  const auto x1 = train_inputs(d, idx, g1, torch::kCPU), x2 = train_inputs(d, idx, g2, torch::kCPU);
  EXPECT_EQ(x1.sizes(), torch::IntArrayRef({3, 3, 16, 16}));
  EXPECT_TRUE(torch::equal(x1, x2));
  // The same image twice in a batch gets its own augmentation.
  EXPECT_FALSE(torch::equal(x1[0], x1[2]));
}

TEST(Inputs, CorruptFileIsNamed) {
  fsa::testing::TempDir dir;
  auto d = png_dataset(dir.path(), 3, 8, 2);
  fsa::testing::write_bytes(d.test.files[1].path, {0x89, 'P', 'N', 'G', 0, 1});
  try {
    eval_inputs(d, d.test, torch::tensor({0, 1}, torch::kInt64), torch::kCPU);
    FAIL() << "no error for a corrupt file";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(d.test.files[1].path), std::string::npos) << e.what();
  }
  SequentialBatches input(d, d.test, 3, torch::kCPU);
  EXPECT_THROW(input.next(), DataError);
}


/// root/train/c<k>/<i>.png (8×8) for counts[k] images, root/test/c<k>/0.png,
/// and the lists train.txt and test.txt over them.
void write_list_dataset(const std::string& root, const std::vector<int>& counts) {
  std::ofstream train(root + "/train.txt"), test(root + "/test.txt");
  for (size_t k = 0; k < counts.size(); ++k) {
    for (const auto* split : {"train", "test"}) {
      const int n = std::string(split) == "train" ? counts[k] : 1;
      const auto folder = fmt::format("{}/c{}", split, k);
      std::filesystem::create_directories(root + "/" + folder);
      for (int i = 0; i < n; ++i) {
        const auto rel = fmt::format("{}/{}.png", folder, i);
        EXPECT_TRUE(cv::imwrite(root + "/" + rel, cv::Mat(8, 8, CV_8UC3, cv::Scalar(10 * i, 50, 90))));
        (std::string(split) == "train" ? train : test) << rel << " " << k << "\n";
      }
    }
  }
}

TEST(ListFileDataset, IsFileBackedAndSkipsUndecodableImagesOnlyWhenAsked) {
  fsa::testing::TempDir dir;
  write_list_dataset(dir.path(), {3, 2});
  io::DatasetConfig d;
  d.name = "ListFile-LT";
  d.root = dir.path();
  d.train_list = "train.txt";
  d.test_list = "test.txt";
  d.transform.crop_size = d.transform.resize_size = 8;
  io::FinetuneConfig split;
  auto data = load_long_tail_dataset(d, split, 0, 2);
  EXPECT_TRUE(data.file_backed());
  EXPECT_EQ(data.format, "list-file");
  EXPECT_EQ(data.class_counts, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(data.train.class_names, (std::vector<std::string>{"c0", "c1"}));  // the folders
  EXPECT_EQ(data.test.size(), 2);
  EXPECT_EQ(data.eval_transform.crop_size, 8);

  const auto broken = dir / "train/c0/1.png";
  fsa::testing::write_bytes(broken, {0x89, 'P', 'N', 'G', 1, 2, 3});
  // Default: loading does not decode; the first pass over the images stops at it.
  data = load_long_tail_dataset(d, split, 0, 2);
  EXPECT_EQ(data.class_counts, (std::vector<int64_t>{3, 2}));
  SequentialBatches pass(data, data.train, 8, torch::kCPU);
  try {
    pass.next();
    FAIL() << "no error for " << broken;
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(broken), std::string::npos) << e.what();
  }
  // skip_corrupt: left out at load time.
  d.skip_corrupt = true;
  data = load_long_tail_dataset(d, split, 0, 2);
  EXPECT_EQ(data.class_counts, (std::vector<int64_t>{2, 2}));
  for (const auto& f : data.train.files) EXPECT_NE(f.path, broken);
  EXPECT_EQ(data.source_indices, (std::vector<int64_t>{0, 2, 3, 4}));
  SequentialBatches clean(data, data.train, 8, torch::kCPU);
  EXPECT_EQ(clean.next()->labels.size(0), 4);
}

TEST(ListFileDataset, TheValidationSplitComesFromValListOrIsHeldOutOfTraining) {
  fsa::testing::TempDir dir;
  write_list_dataset(dir.path(), {3, 2});
  io::DatasetConfig d;
  d.name = "ListFile-LT";
  d.root = dir.path();
  d.train_list = "train.txt";
  d.test_list = "test.txt";
  d.transform.crop_size = d.transform.resize_size = 8;
  io::FinetuneConfig split;
  EXPECT_EQ(load_long_tail_dataset(d, split, 0, 2).val.size(), 0);  // none unless asked

  d.val_list = "test.txt";  // any list of the same classes
  auto data = load_long_tail_dataset(d, split, 0, 2);
  EXPECT_EQ(data.val.size(), 2);
  EXPECT_EQ(data.class_counts, (std::vector<int64_t>{3, 2}));  // training untouched

  d.val_list.clear();
  d.val_fraction = 0.34;  // round(0.34·3) = 1, round(0.34·2) = 1
  data = load_long_tail_dataset(d, split, 0, 2);
  EXPECT_EQ(data.val.size(), 2);
  EXPECT_EQ(data.class_counts, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(data.source_indices.size(), 3u);
  for (const auto& v : data.val.files) {  // held out, not trained on
    for (const auto& t : data.train.files) EXPECT_NE(v.path, t.path);
  }
  EXPECT_EQ(data.fingerprint.num_samples, 3);
}

}  // namespace
}  // namespace fsa::data
