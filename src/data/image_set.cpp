#include "fsa/data/image_set.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
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

#include "fsa/data/image_transforms.h"
#include "fsa/io/files.h"

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

/// The bytes of data file `path`; DataError naming it if it is not a
/// readable regular file (a pipe or /dev/zero would block or never end).
std::vector<uint8_t> read_all(const std::string& path, const char* what = "data file") {
  if (const auto problem = io::file_problem(path); !problem.empty()) {
    throw DataError(fmt::format("{} '{}' {}", what, path, problem));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("cannot open {} '{}'", what, path));
  std::vector<uint8_t> bytes(std::istreambuf_iterator<char>(in), {});
  if (in.bad()) throw DataError(fmt::format("error reading {} '{}'", what, path));
  return bytes;
}

/// Reads a file, inflating it if it is gzipped (by its magic bytes).
std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
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
    contents.push_back(read_all(f, "CIFAR file"));
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
  // Checked before any product: 2^30 × 2^30 would overflow.
  if (h < 1 || w < 1 || h > 65535 || w > 65535) {
    throw DataError(
        fmt::format("IDX image file '{}': header says images of {}x{} pixels; "
                    "expected sides of 1 to 65535",
                    images_path, h, w));
  }
  const auto bytes_needed = static_cast<unsigned __int128>(n) * uint64_t(h) * uint64_t(w) + 16;
  if (bytes_needed != img.size()) {
    throw DataError(fmt::format(
        "IDX image file '{}' is truncated or malformed: header says {} images of {}x{} ({} "
        "bytes), the file has {} bytes",
        images_path, n, h, w,
        static_cast<uint64_t>(std::min<unsigned __int128>(bytes_needed, UINT64_MAX)), img.size()));
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
  // Hidden entries (.ipynb_checkpoints from Jupyter, .DS_Store, ...) are not
  // classes or images; torchvision's ImageFolder would take such a folder
  // as class 0 and shift every real class.
  std::vector<std::string> classes, hidden, not_files;
  auto is_hidden = [](const fs::path& p) { return p.filename().string().rfind('.', 0) == 0; };
  for (const auto& e : fs::directory_iterator(dir)) {
    if (is_hidden(e.path())) {
      hidden.push_back(e.path().filename().string());
    } else if (e.is_directory()) {
      classes.push_back(e.path().filename().string());
    }
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
      if (is_hidden(e.path())) {
        hidden.push_back(classes[c] + "/" + e.path().filename().string());
        continue;
      }
      auto ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
      if (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp") {
        if (e.is_regular_file()) {
          files.push_back(e.path().string());
        } else {  // a folder, pipe or dangling link named like an image
          not_files.push_back(classes[c] + "/" + e.path().filename().string());
        }
      }
    }
    std::sort(files.begin(), files.end());
    for (auto& f : files) samples.push_back({std::move(f), static_cast<int64_t>(c)});
  }
  if (!not_files.empty()) {
    spdlog::warn(
        "image folder '{}': {} entr{} named like images but not image files (a folder, "
        "a pipe or a dangling link) left out ({}{})",
        dir, not_files.size(), not_files.size() == 1 ? "y" : "ies", not_files.front(),
        not_files.size() > 1 ? ", ..." : "");
  }
  if (!hidden.empty()) {
    std::sort(hidden.begin(), hidden.end());
    spdlog::info("image folder '{}': {} hidden entr{} skipped ({}{})", dir, hidden.size(),
                 hidden.size() == 1 ? "y" : "ies", hidden.front(),
                 hidden.size() > 1 ? ", ..." : "");
  }
  if (class_names) *class_names = classes;
  return samples;
}

#ifdef FSA_NO_OPENCV
ImageSet decode_images(const std::vector<FileSample>& samples, const std::vector<std::string>&, int,
                       bool, std::vector<int64_t>*) {
  throw DataError(fmt::format("cannot decode '{}': this fsa was built without OpenCV "
                              "(FSA_WITH_OPENCV=OFF); use CIFAR binary or IDX data",
                              samples.empty() ? std::string("images") : samples[0].path));
}
#else
ImageSet decode_images(const std::vector<FileSample>& samples,
                       const std::vector<std::string>& class_names, int threads, bool skip_corrupt,
                       std::vector<int64_t>* decoded) {
  const int64_t n = static_cast<int64_t>(samples.size());
  if (n == 0) throw DataError("no images to decode");
  // The one decoding policy of every image path (data/image_transforms.h):
  // RGB as torchvision's loader, truncated or garbled files refused by name.
  // The first decodable image sets the size.
  std::vector<std::string> undecodable(static_cast<size_t>(n));
  torch::Tensor first;
  int64_t first_at = 0;
  for (; first_at < n && !first.defined(); ++first_at) {
    try {
      first = decode_image(samples[first_at].path);
    } catch (const DataError& e) {
      if (!skip_corrupt) throw;
      undecodable[first_at] = e.what();
    }
  }
  if (!first.defined()) {
    throw DataError(
        fmt::format("none of the {} images (from '{}' on) can be decoded", n, samples[0].path));
  }
  const int64_t h = first.size(0), w = first.size(1);
  const auto& size_of = samples[first_at - 1].path;
  auto images = torch::empty({n, 3, h, w}, torch::kUInt8);
  auto labels = torch::empty({n}, torch::kInt64);
  std::atomic<int64_t> next{first_at - 1};
  std::string error;
  std::mutex error_mutex;
  auto work = [&] {
    for (int64_t i = next++; i < n; i = next++) {
      std::string problem;
      try {
        torch::Tensor image;
        try {
          image = i == first_at - 1 ? first : decode_image(samples[i].path);
        } catch (const DataError& e) {
          if (!skip_corrupt) throw;
          undecodable[i] = e.what();
          continue;
        }
        if (image.size(0) != h || image.size(1) != w) {
          problem = fmt::format(
              "image '{}' is {}x{}, expected {}x{} like '{}' (an image folder "
              "holds images of one size)",
              samples[i].path, image.size(1), image.size(0), w, h, size_of);
        } else {
          images[i].copy_(image.permute({2, 0, 1}));  // HWC → CHW
          labels.data_ptr<int64_t>()[i] = samples[i].label;
        }
      } catch (const std::exception& e) {  // never let an exception leave a thread
        problem = e.what();
      }
      if (!problem.empty()) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (error.empty()) error = problem;
        next = n;
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  if (!error.empty()) throw DataError(error);
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < n; ++i) {
    if (undecodable[i].empty()) {
      kept.push_back(i);
    } else {
      spdlog::warn("dataset.skip_corrupt: left out {}", undecodable[i]);
    }
  }
  ImageSet out{images, labels, class_names, {}};
  if (decoded) *decoded = kept;
  if (static_cast<int64_t>(kept.size()) < n) {
    spdlog::warn("dataset.skip_corrupt: {} of {} images left out", n - int64_t(kept.size()), n);
    out = out.select(torch::tensor(kept, torch::kInt64));
  }
  return out;
}

#endif  // FSA_NO_OPENCV

}  // namespace fsa::data
