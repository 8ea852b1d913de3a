// Throughput of the ImageNet input pipeline against ResNet-10 training, on this
// machine: which one bounds an ImageNet-LT epoch (docs/PERFORMANCE_LOADER.md).
//
//   build/fsa_loader_bench [--files 200] [--workers 1,2] [--iterations 5] [--batch 32]
//                          [--threads N]
//
// 1. Writes `files` 500×375 JPEGs (IJG quality 90) of smooth random colour
//    fields with noise and shapes into a temporary folder.
// 2. Loader images/s: decode + RandomResizedCrop 224 + flip + ColorJitter(0.4,
//    0.4, 0.4) + ToTensor + Normalize, batches of 32, two epochs per worker count.
// 3. ResNet-10 training images/s: SGD steps (forward, cross-entropy, backward,
//    update) on random batches of `batch` (32) at 224×224, median over `iterations` after
//    one warm-up step, with ATen on `threads` threads (default: all cores, as fsa's
//    `threads: 0`).
#include <fmt/format.h>
#include <torch/torch.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <thread>

#include "fsa/data/image_transforms.h"
#include "fsa/data/loader.h"
#include "fsa/models/backbone.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

/// A photo-like 375×500 image: a smooth colour field, a few shapes, noise.
cv::Mat synthetic_photo(std::mt19937& rng) {
  cv::Mat small(6, 8, CV_8UC3);
  cv::randu(small, 0, 255);
  cv::Mat img;
  cv::resize(small, img, cv::Size(500, 375), 0, 0, cv::INTER_CUBIC);
  std::uniform_int_distribution<int> x(0, 499), y(0, 374), r(10, 80), c(0, 255);
  for (int k = 0; k < 12; ++k) {
    cv::circle(img, {x(rng), y(rng)}, r(rng), cv::Scalar(c(rng), c(rng), c(rng)), cv::FILLED);
    cv::rectangle(img, cv::Rect(x(rng) / 2, y(rng) / 2, r(rng), r(rng)),
                  cv::Scalar(c(rng), c(rng), c(rng)), cv::FILLED);
  }
  cv::Mat noise(img.size(), CV_8UC3);
  cv::randn(noise, 0, 12);
  cv::add(img, noise, img);
  return img;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fsa_loader_bench: loader images/s vs ResNet-10 training images/s"};
  int files = 200, iterations = 5, batch = 32;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<int> workers{1, 2};
  app.add_option("--files", files, "JPEG files to generate")->check(CLI::PositiveNumber);
  app.add_option("--workers", workers, "loader worker counts")->delimiter(',');
  app.add_option("--iterations", iterations, "timed training steps")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "training batch size")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "ATen threads for the training steps")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  std::string load;
  std::getline(std::ifstream("/proc/loadavg"), load);
  fmt::print("threads: {} hardware, ATen intra-op {} by default; load average {}\n",
             std::thread::hardware_concurrency(), torch::get_num_threads(), load);
  const auto dir = fs::temp_directory_path() / fmt::format("fsa_loader_bench_{}", ::getpid());
  fs::create_directories(dir);
  std::vector<fsa::data::FileSample> samples;
  std::mt19937 rng(1);
  size_t bytes = 0;
  for (int i = 0; i < files; ++i) {
    std::vector<uint8_t> jpeg;
    cv::imencode(".jpg", synthetic_photo(rng), jpeg, {cv::IMWRITE_JPEG_QUALITY, 90});
    const auto path = (dir / fmt::format("{:04d}.jpg", i)).string();
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(jpeg.data()), std::streamsize(jpeg.size()));
    bytes += jpeg.size();
    samples.push_back({path, i % 10});
  }
  fmt::print("{} JPEGs of 500x375, {:.0f} KB on average, in {}\n", files,
             double(bytes) / files / 1024, dir.string());

  // Single-thread breakdown: decoding alone, the transform alone.
  {
    auto t0 = Clock::now();
    std::vector<torch::Tensor> decoded;
    for (const auto& s : samples) decoded.push_back(fsa::data::decode_image(s.path));
    const double decode_s = seconds_since(t0);
    const auto transform = fsa::data::ImageTransform::imagenet_train(224);
    fsa::data::Rng r(0);
    t0 = Clock::now();
    for (const auto& img : decoded) transform(img, r);
    const double transform_s = seconds_since(t0);
    fmt::print("one thread: decode {:.2f} ms/image, augment {:.2f} ms/image\n",
               1e3 * decode_s / files, 1e3 * transform_s / files);
  }

  for (int w : workers) {
    fsa::data::LoaderOptions o;
    o.batch_size = 32;
    o.workers = w;
    fsa::data::Loader loader(samples, fsa::data::ImageTransform::imagenet_train(224), o);
    std::vector<double> rates;
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      const auto t0 = Clock::now();
      int64_t n = 0;
      for (auto& b : loader.epoch(epoch)) n += b.labels.size(0);
      if (epoch > 0) rates.push_back(double(n) / seconds_since(t0));  // epoch 0 warms caches
    }
    fmt::print("loader, {} worker{}: {:.1f} images/s (median of {} epochs of {} images)\n", w,
               w == 1 ? "" : "s", median(rates), rates.size(), files);
  }

  {
    torch::set_num_threads(threads);
    torch::manual_seed(0);
    auto model = fsa::models::make_model("resnet10", 1000);
    model->train();
    torch::optim::SGD opt(model->parameters(),
                          torch::optim::SGDOptions(0.2).momentum(0.9).weight_decay(1e-4));
    const auto x = torch::randn({batch, 3, 224, 224});
    const auto y = torch::randint(0, 1000, {batch}, torch::kInt64);
    std::vector<double> rates;
    for (int it = 0; it <= iterations; ++it) {
      const auto t0 = Clock::now();
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
      loss.backward();
      opt.step();
      if (it > 0) rates.push_back(double(batch) / seconds_since(t0));
    }
    fmt::print(
        "ResNet-10 training, batch {} at 224, {} ATen thread{}: {:.1f} images/s (median of {} "
        "steps)\n",
        batch, threads, threads == 1 ? "" : "s", median(rates), rates.size());
  }
  fs::remove_all(dir);
  return 0;
}
