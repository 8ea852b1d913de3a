#include "fsa/data/loader.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <future>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <thread>

#include "test_util.h"

namespace fsa::data {
namespace {

std::vector<int64_t> labels_for(int64_t n) {
  std::vector<int64_t> l;
  for (int64_t i = 0; i < n; ++i) l.push_back(i % 7);
  return l;
}

/// float [3, 2, 2] filled with the index; sleeps a little, unevenly, so that
/// workers finish out of order.
torch::Tensor index_image(int64_t i, Rng& rng) {
  std::this_thread::sleep_for(std::chrono::microseconds(50 * ((i * 7919) % 5)));
  return torch::full({3, 2, 2}, float(i));
}

/// float [3, 2, 2] of random values drawn from the sample's generator.
torch::Tensor random_image(int64_t, Rng& rng) {
  auto t = torch::empty({3, 2, 2});
  for (int64_t k = 0; k < 12; ++k) t.data_ptr<float>()[k] = float(uniform(rng, 0, 1));
  return t;
}

std::vector<Batch> all_batches(Loader& loader, int64_t epoch) {
  std::vector<Batch> out;
  for (auto& b : loader.epoch(epoch)) out.push_back(b);
  return out;
}

TEST(Loader, EveryIndexExactlyOncePerEpoch) {
  const int64_t n = 103;
  for (int workers : {0, 1, 2, 4}) {
    LoaderOptions o;
    o.batch_size = 8;
    o.workers = workers;
    o.seed = 3;
    Loader loader(labels_for(n), index_image, o);
    EXPECT_EQ(loader.batches_per_epoch(), 13);
    std::vector<int64_t> previous;
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      const auto batches = all_batches(loader, epoch);
      ASSERT_EQ(batches.size(), 13u) << workers;
      std::vector<int64_t> seen;
      for (size_t k = 0; k < batches.size(); ++k) {
        const auto& b = batches[k];
        EXPECT_EQ(b.index, int64_t(k));
        EXPECT_EQ(b.epoch, epoch);
        const int64_t size = k + 1 < batches.size() ? 8 : 103 - 12 * 8;
        ASSERT_EQ(b.images.sizes(), torch::IntArrayRef({size, 3, 2, 2}));
        for (int64_t j = 0; j < size; ++j) {
          const auto i = b.indices[j].item<int64_t>();
          seen.push_back(i);
          EXPECT_EQ(b.labels[j].item<int64_t>(), i % 7);
          EXPECT_TRUE(torch::equal(b.images[j], torch::full({3, 2, 2}, float(i))));
        }
      }
      EXPECT_EQ(seen, loader.order(epoch)) << "delivered in the epoch's order";
      EXPECT_NE(seen, previous) << "each epoch reshuffles";
      previous = seen;
      std::sort(seen.begin(), seen.end());
      std::vector<int64_t> all(n);
      std::iota(all.begin(), all.end(), 0);
      EXPECT_EQ(seen, all) << workers << " workers, epoch " << epoch;
    }
  }
}

TEST(Loader, SameSeedSameBatchesForAnyWorkerCount) {
  auto run = [](int workers, uint64_t seed, int64_t epoch) {
    LoaderOptions o;
    o.batch_size = 5;
    o.workers = workers;
    o.seed = seed;
    Loader loader(labels_for(37), random_image, o);
    auto batches = all_batches(loader, epoch);
    std::vector<torch::Tensor> images, indices;
    for (auto& b : batches) {
      images.push_back(b.images);
      indices.push_back(b.indices);
    }
    return std::make_pair(torch::cat(images), torch::cat(indices));
  };
  const auto ref = run(2, 42, 1);
  for (int workers : {2, 2, 1, 4, 0}) {
    const auto other = run(workers, 42, 1);
    EXPECT_TRUE(torch::equal(other.first, ref.first)) << workers;
    EXPECT_TRUE(torch::equal(other.second, ref.second)) << workers;
  }
  EXPECT_FALSE(torch::equal(run(2, 43, 1).first, ref.first));
  EXPECT_FALSE(torch::equal(run(2, 42, 2).first, ref.first));
  // Without shuffling the order is 0..N−1 in every epoch.
  LoaderOptions o;
  o.shuffle = false;
  o.batch_size = 10;
  Loader plain(labels_for(25), index_image, o);
  std::vector<int64_t> want(25);
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(plain.order(0), want);
  EXPECT_EQ(plain.order(5), want);
}

TEST(Loader, DropLastAndRestartingAnEpoch) {
  LoaderOptions o;
  o.batch_size = 4;
  o.drop_last = true;
  Loader loader(labels_for(10), index_image, o);
  EXPECT_EQ(loader.batches_per_epoch(), 2);
  EXPECT_EQ(all_batches(loader, 0).size(), 2u);
  EXPECT_THROW(Loader(labels_for(3), index_image, {0}), std::invalid_argument);
  EXPECT_THROW(Loader({}, index_image, {}), std::invalid_argument);
  // Abandon an epoch after one batch and start it again: all of it comes back.
  o.drop_last = false;
  Loader again(labels_for(50), index_image, o);
  EXPECT_THROW(again.next(), std::logic_error);
  again.start_epoch(0);
  ASSERT_TRUE(again.next().has_value());
  int64_t total = 0;
  for (auto& b : again.epoch(0)) total += b.labels.size(0);
  EXPECT_EQ(total, 50);
  EXPECT_FALSE(again.next().has_value());  // stays exhausted
}

TEST(Loader, SampleErrorsSurfaceWithTheirBatch) {
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = false;
  o.workers = 2;
  Loader loader(
      labels_for(20),
      [](int64_t i, Rng& rng) {
        if (i == 9) throw DataError("image 'nine.jpg' is corrupt");
        return index_image(i, rng);
      },
      o);
  loader.start_epoch(0);
  EXPECT_TRUE(loader.next().has_value());
  EXPECT_TRUE(loader.next().has_value());
  try {
    loader.next();
    ADD_FAILURE() << "batch 2 holds sample 9";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("nine.jpg"), std::string::npos);
  }
  EXPECT_EQ(loader.next()->index, 3);  // later batches still come
}

TEST(Loader, DestroyingMidEpochReturnsPromptly) {
  LoaderOptions o;
  o.batch_size = 4;
  o.workers = 4;
  o.prefetch = 16;
  // 2,000 batches of 4 samples at 2 ms each: ~4 s of work with 4 workers.
  auto* loader = new Loader(
      labels_for(8000),
      [](int64_t i, Rng&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        return torch::full({3, 2, 2}, float(i));
      },
      o);
  loader->start_epoch(0);
  ASSERT_TRUE(loader->next().has_value());
  auto done = std::make_shared<std::promise<double>>();
  auto seconds = done->get_future();
  std::thread([loader, done] {
    const auto t0 = std::chrono::steady_clock::now();
    delete loader;
    done->set_value(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }).detach();
  if (seconds.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    FAIL() << "~Loader did not return within 10 s";  // leaks the stuck thread
  }
  EXPECT_LT(seconds.get(), 0.5);
}

TEST(Loader, ImageFilesThroughTheTransform) {
  fsa::testing::TempDir dir;
  std::vector<FileSample> files;
  for (int i = 0; i < 10; ++i) {
    cv::Mat m(60 + i, 80, CV_8UC3, cv::Scalar(10 * i, 100, 200));
    const auto path = dir / ("img" + std::to_string(i) + ".jpg");
    ASSERT_TRUE(cv::imwrite(path, m));
    files.push_back({path, i % 3});
  }
  LoaderOptions o;
  o.batch_size = 4;
  o.workers = 2;
  o.pin_memory = true;  // no CUDA here: ordinary memory
  Loader loader(files, ImageTransform::imagenet_train(32), o);
  auto batches = all_batches(loader, 0);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0].images.sizes(), torch::IntArrayRef({4, 3, 32, 32}));
  EXPECT_EQ(batches[2].images.sizes(), torch::IntArrayRef({2, 3, 32, 32}));
  EXPECT_EQ(batches[0].images.scalar_type(), torch::kFloat32);
  EXPECT_EQ(batches[1].labels[0].item<int64_t>(), batches[1].indices[0].item<int64_t>() % 3);
  // Evaluation pipeline, and a corrupt file named in the error.
  fsa::testing::write_bytes(files[7].path, {0xFF, 0xD8, 0xFF, 0xE0, 0, 16});
  o.shuffle = false;
  Loader eval(files, ImageTransform::imagenet_eval(32), o);
  eval.start_epoch(0);
  EXPECT_EQ(eval.next()->images.sizes(), torch::IntArrayRef({4, 3, 32, 32}));
  try {
    eval.next();
    ADD_FAILURE() << "img7.jpg is corrupt";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("img7.jpg"), std::string::npos) << e.what();
  }
}

TEST(Loader, SampleSeedsAreDistinct) {
  std::set<uint64_t> seeds;
  for (int64_t e = 0; e < 10; ++e) {
    for (int64_t i = -1; i < 1000; ++i) seeds.insert(sample_seed(0, e, i));
  }
  EXPECT_EQ(seeds.size(), 10u * 1001u);
  EXPECT_NE(sample_seed(1, 0, 0), sample_seed(0, 0, 0));
}

}  // namespace
}  // namespace fsa::data
