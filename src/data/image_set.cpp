#include "fsa/data/image_set.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#ifndef FSA_NO_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif
#include <mutex>
#include <thread>

namespace fs = std::filesystem;

namespace fsa::data {

ImageSet ImageSet::select(const torch::Tensor& indices) const {
  ImageSet out{images.defined() ? images.index_select(0, indices.to(images.device())) : images,
               labels.index_select(0, indices.to(labels.device())), class_names, {}};
  if (file_backed()) {
    const auto idx = indices.to(torch::kCPU, torch::kInt64).contiguous();
    for (int64_t i = 0; i < idx.numel(); ++i) {
      out.files.push_back(files.at(static_cast<size_t>(idx.data_ptr<int64_t>()[i])));
    }
  }
  return out;
}

namespace {

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("cannot open data file '{}'", path));
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

/// Reads a file, inflating it if it is gzipped (by its magic bytes).
std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
  if (!fs::exists(path)) throw DataError(fmt::format("data file '{}' does not exist", path));
  std::vector<uint8_t> raw = read_all(path);
  if (raw.size() < 2 || raw[0] != 0x1f || raw[1] != 0x8b) return raw;
  gzFile gz = gzopen(path.c_str(), "rb");
  if (!gz) throw DataError(fmt::format("cannot open gzip file '{}'", path));
  std::vector<uint8_t> out;
  std::vector<uint8_t> buf(1 << 20);
  while (true) {
    const int n = gzread(gz, buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(gz, &err);
      gzclose(gz);
      throw DataError(fmt::format("gzip file '{}' is corrupt: {}", path, msg));
    }
    if (n == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
  // gzread reports a truncated stream only through gzerror at the end.
  int err = 0;
  const char* msg = gzerror(gz, &err);
  const std::string message = msg ? msg : "";
  gzclose(gz);
  if (err != Z_OK && err != Z_STREAM_END) {
    throw DataError(fmt::format("gzip file '{}' is corrupt or truncated: {}", path, message));
  }
  return out;
}

uint32_t big_endian_u32(const std::vector<uint8_t>& b, size_t at) {
  return (uint32_t(b[at]) << 24) | (uint32_t(b[at + 1]) << 16) | (uint32_t(b[at + 2]) << 8) |
         uint32_t(b[at + 3]);
}

std::vector<std::string> numbered_names(int64_t n) {
  std::vector<std::string> names;
  for (int64_t i = 0; i < n; ++i) names.push_back(std::to_string(i));
  return names;
}

std::string cifar_dir(const std::string& root, const std::string& sub) {
  return fs::exists(fs::path(root) / sub) ? (fs::path(root) / sub).string() : root;
}

}  // namespace

ImageSet read_cifar_batches(const std::vector<std::string>& files, int label_bytes,
                            int64_t num_classes) {
  constexpr int64_t kPixels = 3 * 32 * 32;
  const int64_t record = label_bytes + kPixels;
  std::vector<std::vector<uint8_t>> contents;
  int64_t total = 0;
  for (const auto& f : files) {
    if (!fs::exists(f)) throw DataError(fmt::format("CIFAR file '{}' does not exist", f));
    contents.push_back(read_all(f));
    const auto size = static_cast<int64_t>(contents.back().size());
    if (size == 0 || size % record != 0) {
      throw DataError(fmt::format(
          "CIFAR file '{}' is truncated or malformed: {} bytes is not a whole number of "
          "{}-byte records", f, size, record));
    }
    total += size / record;
  }
  auto images = torch::empty({total, 3, 32, 32}, torch::kUInt8);
  auto labels = torch::empty({total}, torch::kInt64);
  auto* img = images.data_ptr<uint8_t>();
  auto* lab = labels.data_ptr<int64_t>();
  int64_t n = 0;
  for (size_t fi = 0; fi < files.size(); ++fi) {
    const auto& bytes = contents[fi];
    const int64_t count = static_cast<int64_t>(bytes.size()) / record;
    for (int64_t r = 0; r < count; ++r, ++n) {
      const uint8_t* rec = bytes.data() + r * record;
      const int64_t label = rec[label_bytes - 1];  // CIFAR-100: the fine label is second
      if (label >= num_classes) {
        throw DataError(fmt::format("CIFAR file '{}', record {}: label {} is outside [0, {})",
                                    files[fi], r, label, num_classes));
      }
      lab[n] = label;
      std::copy(rec + label_bytes, rec + record, img + n * kPixels);
    }
  }
  return ImageSet{images, labels, numbered_names(num_classes), {}};
}

bool has_cifar_binary(const std::string& root, int variant) {
  if (variant == 10) {
    const auto dir = cifar_dir(root, "cifar-10-batches-bin");
    return fs::exists(fs::path(dir) / "data_batch_1.bin");
  }
  const auto dir = cifar_dir(root, "cifar-100-binary");
  return fs::exists(fs::path(dir) / "train.bin");
}

ImageSet read_cifar10(const std::string& root, bool train) {
  const auto dir = cifar_dir(root, "cifar-10-batches-bin");
  std::vector<std::string> files;
  if (train) {
    for (int i = 1; i <= 5; ++i) files.push_back(fmt::format("{}/data_batch_{}.bin", dir, i));
  } else {
    files.push_back(dir + "/test_batch.bin");
  }
  auto set = read_cifar_batches(files, 1, 10);
  set.class_names = {"airplane", "automobile", "bird", "cat", "deer",
                     "dog", "frog", "horse", "ship", "truck"};
  return set;
}

ImageSet read_cifar100(const std::string& root, bool train) {
  const auto dir = cifar_dir(root, "cifar-100-binary");
  return read_cifar_batches({dir + (train ? "/train.bin" : "/test.bin")}, 2, 100);
}

ImageSet read_idx(const std::string& images_path, const std::string& labels_path,
                  int64_t num_classes) {
  const auto img = read_maybe_gzip(images_path);
  const auto lab = read_maybe_gzip(labels_path);
  if (img.size() < 16 || big_endian_u32(img, 0) != 0x00000803) {
    throw DataError(fmt::format("IDX image file '{}': expected magic 0x00000803 (uint8, 3 dims)",
                                images_path));
  }
  if (lab.size() < 8 || big_endian_u32(lab, 0) != 0x00000801) {
    throw DataError(fmt::format("IDX label file '{}': expected magic 0x00000801 (uint8, 1 dim)",
                                labels_path));
  }
  const int64_t n = big_endian_u32(img, 4);
  const int64_t h = big_endian_u32(img, 8);
  const int64_t w = big_endian_u32(img, 12);
  const int64_t n_labels = big_endian_u32(lab, 4);
  if (static_cast<int64_t>(img.size()) != 16 + n * h * w) {
    throw DataError(fmt::format("IDX image file '{}' is truncated: header says {} images of "
                                "{}x{} ({} bytes), file has {} bytes", images_path, n, h, w,
                                16 + n * h * w, img.size()));
  }
  if (static_cast<int64_t>(lab.size()) != 8 + n_labels) {
    throw DataError(fmt::format("IDX label file '{}' is truncated: header says {} labels, file "
                                "has {} bytes", labels_path, n_labels, lab.size()));
  }
  if (n != n_labels) {
    throw DataError(fmt::format("IDX files disagree: '{}' has {} images, '{}' has {} labels",
                                images_path, n, labels_path, n_labels));
  }
  auto images = torch::from_blob(const_cast<uint8_t*>(img.data()) + 16, {n, 1, h, w},
                                 torch::kUInt8).clone();
  auto labels = torch::empty({n}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = lab[8 + i];
    if (label >= num_classes) {
      throw DataError(fmt::format("IDX label file '{}', item {}: label {} is outside [0, {})",
                                  labels_path, i, label, num_classes));
    }
    labels[i] = label;
  }
  return ImageSet{images, labels, numbered_names(num_classes), {}};
}

std::vector<FileSample> list_image_folder(const std::string& dir,
                                          std::vector<std::string>* class_names) {
  if (!fs::is_directory(dir)) {
    throw DataError(fmt::format("image folder '{}' does not exist or is not a folder", dir));
  }
  std::vector<std::string> classes;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory()) classes.push_back(e.path().filename().string());
  }
  std::sort(classes.begin(), classes.end());
  if (classes.empty()) {
    throw DataError(fmt::format("image folder '{}' has no class folders (expected "
                                "'{}/<class>/*.jpg')", dir, dir));
  }
  std::vector<FileSample> samples;
  for (size_t c = 0; c < classes.size(); ++c) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(fs::path(dir) / classes[c])) {
      auto ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
      if (e.is_regular_file() &&
          (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp")) {
        files.push_back(e.path().string());
      }
    }
    std::sort(files.begin(), files.end());
    for (auto& f : files) samples.push_back({std::move(f), static_cast<int64_t>(c)});
  }
  if (class_names) *class_names = classes;
  return samples;
}

#ifdef FSA_NO_OPENCV
ImageSet decode_images(const std::vector<FileSample>& samples, const std::vector<std::string>&,
                       int) {
  throw DataError(fmt::format("cannot decode '{}': this fsa was built without OpenCV "
                              "(FSA_WITH_OPENCV=OFF); use CIFAR binary or IDX data",
                              samples.empty() ? std::string("images") : samples[0].path));
}
#else
ImageSet decode_images(const std::vector<FileSample>& samples,
                       const std::vector<std::string>& class_names, int threads) {
  const int64_t n = static_cast<int64_t>(samples.size());
  if (n == 0) throw DataError("no images to decode");
  auto first = cv::imread(samples[0].path, cv::IMREAD_UNCHANGED);
  if (first.empty()) throw DataError(fmt::format("cannot decode image '{}'", samples[0].path));
  const int channels = first.channels() == 1 ? 1 : 3;
  const int h = first.rows, w = first.cols;
  auto images = torch::empty({n, channels, h, w}, torch::kUInt8);
  auto labels = torch::empty({n}, torch::kInt64);
  std::atomic<int64_t> next{0};
  std::string error;
  std::mutex error_mutex;
  auto work = [&] {
    for (int64_t i = next++; i < n; i = next++) {
      cv::Mat m = cv::imread(samples[i].path,
                             channels == 1 ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
      std::string problem;
      if (m.empty()) {
        problem = fmt::format("cannot decode image '{}' (missing, corrupt or not an image)",
                              samples[i].path);
      } else if (m.rows != h || m.cols != w) {
        problem = fmt::format("image '{}' is {}x{}, expected {}x{} like '{}'", samples[i].path,
                              m.cols, m.rows, w, h, samples[0].path);
      }
      if (!problem.empty()) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (error.empty()) error = problem;
        next = n;
        return;
      }
      if (channels == 3) cv::cvtColor(m, m, cv::COLOR_BGR2RGB);
      // HWC interleaved → CHW planes.
      uint8_t* dst = images.data_ptr<uint8_t>() + i * channels * h * w;
      for (int y = 0; y < h; ++y) {
        const uint8_t* row = m.ptr<uint8_t>(y);
        for (int x = 0; x < w; ++x) {
          for (int c = 0; c < channels; ++c) dst[(c * h + y) * w + x] = row[x * channels + c];
        }
      }
      labels.data_ptr<int64_t>()[i] = samples[i].label;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  if (!error.empty()) throw DataError(error);
  return ImageSet{images, labels, class_names, {}};
}

#endif  // FSA_NO_OPENCV

}  // namespace fsa::data
