// Helpers for tests: temporary folders and small synthetic datasets.
#pragma once

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace fsa::testing {

/// A fresh folder under the system temp dir, removed at destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fsa_test_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

/// uint8 [H, W, 3] with pixel (y, x, c) = (7y + 3x + 50c) mod 256: an image
/// whose every pixel is known by hand.
inline torch::Tensor pattern_image(int64_t h, int64_t w) {
  auto y = torch::arange(h).view({h, 1, 1});
  auto x = torch::arange(w).view({1, w, 1});
  auto c = torch::arange(3).view({1, 1, 3});
  return ((7 * y + 3 * x + 50 * c) % 256).to(torch::kUInt8).contiguous();
}

/// An IDX image file (magic 0x00000803): n images of h × w, pixel i of the
/// file = 3i mod 256.
inline std::vector<uint8_t> idx_images(uint32_t n, uint32_t h, uint32_t w) {
  std::vector<uint8_t> b{0, 0, 8, 3};
  for (uint32_t v : {n, h, w}) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
  }
  for (uint32_t i = 0; i < n * h * w; ++i) b.push_back(uint8_t(i * 3));
  return b;
}

/// An IDX label file (magic 0x00000801) holding `labels` (at most 255).
inline std::vector<uint8_t> idx_labels(const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> b{0, 0, 8, 1, 0, 0, 0, uint8_t(labels.size())};
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

/// Writes root/{train,test}/<class>/NNNN.png: 32×32 RGB images whose class is
/// visible (a bright square at a class-specific place on noise), so a small
/// network learns them in a few epochs. train_counts[c] images of class c.
inline void make_image_folder(const std::string& root, const std::vector<int>& train_counts,
                              int test_per_class, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> noise(0, 60);
  auto write_split = [&](const std::string& split, int c, int count) {
    const auto dir = root + "/" + split + "/class_" + std::to_string(c);
    std::filesystem::create_directories(dir);
    for (int i = 0; i < count; ++i) {
      cv::Mat img(32, 32, CV_8UC3);
      for (int y = 0; y < 32; ++y) {
        for (int x = 0; x < 32; ++x) {
          img.at<cv::Vec3b>(y, x) = cv::Vec3b(noise(rng), noise(rng), noise(rng));
        }
      }
      const int oy = 4 + (c % 3) * 8, ox = 4 + (c / 3) * 8;
      for (int y = oy; y < oy + 8; ++y) {
        for (int x = ox; x < ox + 8; ++x) {
          img.at<cv::Vec3b>(y, x) = cv::Vec3b(200 + 10 * (c % 5), 230, 180 + 20 * (c % 4));
        }
      }
      char name[32];
      std::snprintf(name, sizeof(name), "/%04d.png", i);
      cv::imwrite(dir + name, img);
    }
  };
  for (size_t c = 0; c < train_counts.size(); ++c) {
    write_split("train", int(c), train_counts[c]);
    write_split("test", int(c), test_per_class);
  }
}

/// Runs a shell command, returning its exit code; output goes to `log`.
inline int run_command(const std::string& cmd, const std::string& log) {
  const int rc = std::system((cmd + " > '" + log + "' 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/// The message of the exception of type E that f() throws, or "" if it
/// throws none (an exception of another type passes through).
template <typename E, typename F>
std::string error_message(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

/// What the default logger says while this object lives (warnings, info).
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(text_)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  std::string text() const { return text_.str(); }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

#ifdef FSA_BINARY
/// Runs the fsa program with `args` (stdout and stderr into dir/cmd.log);
/// returns its exit code and, if `output` is given, what it printed.
inline int run_fsa(const TempDir& dir, const std::string& args, std::string* output = nullptr) {
  const auto log = dir / "cmd.log";
  const int rc = run_command(std::string(FSA_BINARY) + " " + args, log);
  if (output) *output = read_text(log);
  return rc;
}
#endif

}  // namespace fsa::testing
