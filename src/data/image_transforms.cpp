#include "fsa/data/image_transforms.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <stdexcept>
#ifndef FSA_NO_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

#include "fsa/data/image_set.h"
#include "fsa/io/files.h"

namespace fsa::data {
namespace {

void check_image(const torch::Tensor& image, const char* what) {
  if (image.dim() != 3 || image.size(2) != 3 || image.scalar_type() != torch::kUInt8 ||
      !image.device().is_cpu()) {
    throw std::invalid_argument(fmt::format("{}: expected a uint8 [H, W, 3] CPU image, got {} {}",
                                            what, image.sizes(),
                                            c10::toString(image.scalar_type())));
  }
}

#ifndef FSA_NO_OPENCV
/// A cv::Mat sharing the tensor's memory (the tensor must be contiguous).
cv::Mat as_mat(const torch::Tensor& image) {
  return cv::Mat(static_cast<int>(image.size(0)), static_cast<int>(image.size(1)), CV_8UC3,
                 image.data_ptr<uint8_t>());
}
#endif

torch::Tensor new_image(int64_t height, int64_t width) {
  return torch::empty({height, width, 3}, torch::kUInt8);
}

bool inside(const CropBox& b, int64_t height, int64_t width) {
  return b.top >= 0 && b.left >= 0 && b.top + b.height <= height && b.left + b.width <= width;
}

#ifndef FSA_NO_OPENCV
/// Bilinear where a side grows, area averaging where it shrinks; one pass per
/// axis when one grows and the other shrinks.
torch::Tensor resize_mat(const cv::Mat& src, int64_t out_height, int64_t out_width) {
  if (out_height < 1 || out_width < 1) {
    throw std::invalid_argument(fmt::format("resize: empty size {}x{}", out_height, out_width));
  }
  auto step = [](const cv::Mat& from, int64_t h, int64_t w) {
    const bool shrink = h <= from.rows && w <= from.cols;
    auto to = new_image(h, w);
    cv::Mat dst = as_mat(to);
    cv::resize(from, dst, dst.size(), 0, 0, shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
    return to;
  };
  const bool mixed = (out_height < src.rows && out_width > src.cols) ||
                     (out_height > src.rows && out_width < src.cols);
  if (!mixed) return step(src, out_height, out_width);
  const auto half = step(src, out_height, src.cols);
  return step(as_mat(half), out_height, out_width);
}
#else
/// Builds without OpenCV (FSA_WITH_OPENCV=OFF) decode no image files, so the
/// pixel operations on decoded images are not available either.
[[noreturn]] void no_opencv(const char* what) {
  throw DataError(fmt::format("{}: this build has no OpenCV (FSA_WITH_OPENCV=OFF)", what));
}
#endif

/// True if a JPEG stream ends with its end-of-image marker: walks the marker
/// segments and, after each start-of-scan, the entropy-coded data (where 0xFF
/// is followed by 0x00 stuffing or a restart marker) up to the next marker.
/// libjpeg only warns on a truncated stream and OpenCV then returns grey
/// rows, so the check is made here.
bool jpeg_has_end(const uint8_t* d, size_t n) {
  size_t i = 2;  // after SOI
  while (i < n) {
    if (d[i] != 0xFF) {
      ++i;  // tolerate stray bytes between segments, as libjpeg does
      continue;
    }
    while (i < n && d[i] == 0xFF) ++i;
    if (i >= n) return false;
    const uint8_t marker = d[i++];
    if (marker == 0xD9) return true;
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;
    if (i + 2 > n) return false;
    const size_t length = (size_t(d[i]) << 8) | d[i + 1];
    if (length < 2) return false;
    i += length;
    if (marker != 0xDA) continue;
    while (i + 1 < n) {
      if (d[i] != 0xFF) {
        ++i;
      } else if (d[i + 1] == 0x00 || (d[i + 1] >= 0xD0 && d[i + 1] <= 0xD7)) {
        i += 2;
      } else if (d[i + 1] == 0xFF) {
        ++i;
      } else {
        break;  // the marker after the scan
      }
    }
    if (i + 1 >= n) return false;
  }
  return false;
}

float gray(float r, float g, float b) { return 0.2989f * r + 0.587f * g + 0.114f * b; }

float clamp01(float x) { return std::min(1.0f, std::max(0.0f, x)); }

/// torchvision's _rgb2hsv / _hsv2rgb on one pixel, in place.
void shift_hue(float& r, float& g, float& b, float shift) {
  const float maxc = std::max(r, std::max(g, b));
  const float minc = std::min(r, std::min(g, b));
  const bool eqc = maxc == minc;
  const float cr = maxc - minc;
  const float s = cr / (eqc ? 1.0f : maxc);
  const float div = eqc ? 1.0f : cr;
  const float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
  float h;
  if (maxc == r) {
    h = bc - gc;
  } else if (maxc == g) {
    h = 2.0f + rc - bc;
  } else {
    h = 4.0f + gc - rc;
  }
  h = std::fmod(h / 6.0f + 1.0f, 1.0f);
  h = h + shift;  // (h + shift) mod 1, Python's modulo (non-negative)
  h = h - std::floor(h);
  const float v = maxc;
  const float i_f = std::floor(h * 6.0f);
  const float f = h * 6.0f - i_f;
  const int i = static_cast<int>(i_f) % 6;
  const float p = clamp01(v * (1.0f - s));
  const float q = clamp01(v * (1.0f - s * f));
  const float t = clamp01(v * (1.0f - s * (1.0f - f)));
  switch (i < 0 ? i + 6 : i) {
    case 0:
      r = v;
      g = t;
      b = p;
      break;
    case 1:
      r = q;
      g = v;
      b = p;
      break;
    case 2:
      r = p;
      g = v;
      b = t;
      break;
    case 3:
      r = p;
      g = q;
      b = v;
      break;
    case 4:
      r = t;
      g = p;
      b = v;
      break;
    default:
      r = v;
      g = p;
      b = q;
      break;
  }
}

}  // namespace

double uniform(Rng& rng, double lo, double hi) {
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
  return lo + (hi - lo) * u;
}

int64_t uniform_int(Rng& rng, int64_t lo, int64_t hi) {
  const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  if (span == 0) return static_cast<int64_t>(rng());  // the whole 64-bit range
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % span;
  uint64_t r;
  do {
    r = rng();
  } while (r >= limit);
  return lo + static_cast<int64_t>(r % span);
}

int64_t round_half_even(double x) {
  const double f = std::floor(x);
  const double diff = x - f;
  if (diff > 0.5) return static_cast<int64_t>(f) + 1;
  if (diff < 0.5) return static_cast<int64_t>(f);
  const auto fi = static_cast<int64_t>(f);
  return fi % 2 == 0 ? fi : fi + 1;
}

torch::Tensor decode_image(const std::vector<uint8_t>& bytes, const std::string& name) {
#ifdef FSA_NO_OPENCV
  no_opencv("decode_image");
#else
  if (bytes.empty()) throw DataError(fmt::format("image '{}' is empty", name));
  const bool jpeg = bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;
  if (jpeg && !jpeg_has_end(bytes.data(), bytes.size())) {
    throw DataError(fmt::format("image '{}' is a truncated JPEG (no end-of-image marker)", name));
  }
  cv::Mat decoded;
  try {
    decoded = cv::imdecode(
        cv::Mat(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<uint8_t*>(bytes.data())),
        cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  } catch (const cv::Exception& e) {
    throw DataError(fmt::format("image '{}' cannot be decoded: {}", name, e.what()));
  }
  if (decoded.empty() || decoded.type() != CV_8UC3) {
    throw DataError(
        fmt::format("image '{}' is corrupt or not in an image format OpenCV reads", name));
  }
  auto out = new_image(decoded.rows, decoded.cols);
  cv::Mat dst = as_mat(out);
  cv::cvtColor(decoded, dst, cv::COLOR_BGR2RGB);
  return out;
#endif
}

torch::Tensor decode_image(const std::string& path) {
  if (const auto problem = io::file_problem(path); !problem.empty()) {
    throw DataError(fmt::format("image '{}' {}", path, problem));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("cannot open image '{}'", path));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  if (in.bad()) throw DataError(fmt::format("error reading image '{}'", path));
  return decode_image(bytes, path);
}

CropBox fallback_crop_box(int64_t height, int64_t width, const ResizedCropRange& range) {
  const double in_ratio = double(width) / double(height);
  int64_t w = width, h = height;
  if (in_ratio < range.ratio_min) {
    h = round_half_even(double(w) / range.ratio_min);
  } else if (in_ratio > range.ratio_max) {
    w = round_half_even(double(h) * range.ratio_max);
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

CropBox random_resized_crop_box(int64_t height, int64_t width, const ResizedCropRange& range,
                                Rng& rng) {
  const double area = double(height) * double(width);
  const double log_lo = std::log(range.ratio_min), log_hi = std::log(range.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * uniform(rng, range.scale_min, range.scale_max);
    const double ratio = std::exp(uniform(rng, log_lo, log_hi));
    const int64_t w = round_half_even(std::sqrt(target_area * ratio));
    const int64_t h = round_half_even(std::sqrt(target_area / ratio));
    if (0 < w && w <= width && 0 < h && h <= height) {
      const int64_t top = uniform_int(rng, 0, height - h);
      const int64_t left = uniform_int(rng, 0, width - w);
      return {top, left, h, w};
    }
  }
  return fallback_crop_box(height, width, range);
}

torch::Tensor crop(const torch::Tensor& image, const CropBox& box) {
#ifdef FSA_NO_OPENCV
  no_opencv("crop");
#else
  check_image(image, "crop");
  if (box.height < 1 || box.width < 1) {
    throw std::invalid_argument(fmt::format("crop: empty box {}x{}", box.height, box.width));
  }
  const auto src = image.contiguous();
  const int64_t H = src.size(0), W = src.size(1);
  auto out = inside(box, H, W) ? new_image(box.height, box.width)
                               : torch::zeros({box.height, box.width, 3}, torch::kUInt8);
  const int64_t y0 = std::max<int64_t>(box.top, 0), y1 = std::min(box.top + box.height, H);
  const int64_t x0 = std::max<int64_t>(box.left, 0), x1 = std::min(box.left + box.width, W);
  if (y0 < y1 && x0 < x1) {
    const cv::Rect from(int(x0), int(y0), int(x1 - x0), int(y1 - y0));
    const cv::Rect to(int(x0 - box.left), int(y0 - box.top), int(x1 - x0), int(y1 - y0));
    cv::Mat dst = as_mat(out)(to);
    as_mat(src)(from).copyTo(dst);
  }
  return out;
#endif
}

torch::Tensor resize(const torch::Tensor& image, int64_t out_height, int64_t out_width) {
#ifdef FSA_NO_OPENCV
  no_opencv("resize");
#else
  check_image(image, "resize");
  if (image.size(0) == out_height && image.size(1) == out_width) return image;
  const auto src = image.contiguous();
  return resize_mat(as_mat(src), out_height, out_width);
#endif
}

torch::Tensor resized_crop(const torch::Tensor& image, const CropBox& box, int64_t out_height,
                           int64_t out_width) {
#ifdef FSA_NO_OPENCV
  no_opencv("resized_crop");
#else
  check_image(image, "resized_crop");
  if (!inside(box, image.size(0), image.size(1))) {
    return resize(crop(image, box), out_height, out_width);
  }
  // Resize straight from the box's pixels: no copy of the crop.
  const auto src = image.contiguous();
  const cv::Rect roi(int(box.left), int(box.top), int(box.width), int(box.height));
  const cv::Mat from = as_mat(src)(roi);
  if (box.height == out_height && box.width == out_width) {
    auto out = new_image(out_height, out_width);
    cv::Mat dst = as_mat(out);
    from.copyTo(dst);
    return out;
  }
  return resize_mat(from, out_height, out_width);
#endif
}

torch::Tensor hflip(const torch::Tensor& image) {
#ifdef FSA_NO_OPENCV
  no_opencv("hflip");
#else
  check_image(image, "hflip");
  const auto src = image.contiguous();
  auto out = new_image(src.size(0), src.size(1));
  cv::Mat dst = as_mat(out);
  cv::flip(as_mat(src), dst, /*flipCode=*/1);
  return out;
#endif
}

std::pair<int64_t, int64_t> shorter_side_size(int64_t height, int64_t width, int64_t size) {
  if (size < 1 || height < 1 || width < 1) {
    throw std::invalid_argument(fmt::format("Resize({}) of a {}x{} image", size, height, width));
  }
  const bool portrait = width <= height;
  const int64_t shorter = portrait ? width : height, longer = portrait ? height : width;
  // torchvision: int(size * long / short), in floating point.
  const auto new_long = static_cast<int64_t>(double(size) * double(longer) / double(shorter));
  return portrait ? std::make_pair(new_long, size) : std::make_pair(size, new_long);
}

torch::Tensor resize_shorter_side(const torch::Tensor& image, int64_t size) {
  check_image(image, "resize_shorter_side");
  const auto [h, w] = shorter_side_size(image.size(0), image.size(1), size);
  return resize(image, h, w);
}

CropBox center_crop_box(int64_t height, int64_t width, int64_t crop_height, int64_t crop_width) {
  auto offset = [](int64_t size, int64_t crop) {
    return crop > size ? -((crop - size) / 2) : round_half_even(double(size - crop) / 2.0);
  };
  return {offset(height, crop_height), offset(width, crop_width), crop_height, crop_width};
}

torch::Tensor center_crop(const torch::Tensor& image, int64_t crop_height, int64_t crop_width) {
  check_image(image, "center_crop");
  return crop(image, center_crop_box(image.size(0), image.size(1), crop_height, crop_width));
}

torch::Tensor to_float_chw(const torch::Tensor& image) {
  check_image(image, "to_float_chw");
  const auto src = image.contiguous();
  const int64_t n = src.size(0) * src.size(1);
  auto out = torch::empty({3, src.size(0), src.size(1)}, torch::kFloat32);
  const uint8_t* p = src.data_ptr<uint8_t>();
  float* q = out.data_ptr<float>();
  // A plain loop: loader workers must not fan out into ATen's thread pool.
  for (int64_t i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c) q[c * n + i] = float(p[3 * i + c]) * (1.0f / 255.0f);
  }
  return out;
}

void normalize_(torch::Tensor& image, const std::vector<double>& mean,
                const std::vector<double>& std) {
  if (mean.size() != 3 || std.size() != 3) {
    throw std::invalid_argument("normalize_: mean and std need 3 entries");
  }
  if (image.dim() != 3 || image.size(0) != 3 || image.scalar_type() != torch::kFloat32 ||
      !image.is_contiguous()) {
    throw std::invalid_argument(
        fmt::format("normalize_: expected contiguous float [3, H, W], got {}", image.sizes()));
  }
  const int64_t plane = image.size(1) * image.size(2);
  float* p = image.data_ptr<float>();
  for (int c = 0; c < 3; ++c) {
    const float m = static_cast<float>(mean[c]), inv = static_cast<float>(1.0 / std[c]);
    for (int64_t i = 0; i < plane; ++i) p[c * plane + i] = (p[c * plane + i] - m) * inv;
  }
}

JitterDraw draw_color_jitter(const ColorJitter& j, Rng& rng) {
  JitterDraw d;
  for (int i = 3; i > 0; --i) {  // Fisher–Yates: a uniform permutation of 0..3
    std::swap(d.order[i], d.order[uniform_int(rng, 0, i)]);
  }
  auto factor = [&](double x) { return uniform(rng, std::max(0.0, 1.0 - x), 1.0 + x); };
  if (j.brightness > 0) d.brightness = factor(j.brightness);
  if (j.contrast > 0) d.contrast = factor(j.contrast);
  if (j.saturation > 0) d.saturation = factor(j.saturation);
  if (j.hue > 0) d.hue = uniform(rng, -j.hue, j.hue);
  return d;
}

void apply_color_jitter_(torch::Tensor& image, const JitterDraw& d) {
  if (image.dim() != 3 || image.size(0) != 3 || image.scalar_type() != torch::kFloat32 ||
      !image.is_contiguous()) {
    throw std::invalid_argument(fmt::format(
        "apply_color_jitter_: expected contiguous float [3, H, W], got {}", image.sizes()));
  }
  const int64_t n = image.size(1) * image.size(2);
  float* r = image.data_ptr<float>();
  float* g = r + n;
  float* b = g + n;
  for (int step : d.order) {
    if (step == 0 && d.brightness) {
      const float f = static_cast<float>(*d.brightness);
      for (int64_t i = 0; i < 3 * n; ++i) r[i] = clamp01(r[i] * f);
    } else if (step == 1 && d.contrast) {
      const float f = static_cast<float>(*d.contrast);
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) sum += gray(r[i], g[i], b[i]);
      const float m = static_cast<float>(sum / double(n)) * (1.0f - f);
      for (int64_t i = 0; i < 3 * n; ++i) r[i] = clamp01(f * r[i] + m);
    } else if (step == 2 && d.saturation) {
      const float f = static_cast<float>(*d.saturation);
      for (int64_t i = 0; i < n; ++i) {
        const float y = (1.0f - f) * gray(r[i], g[i], b[i]);
        r[i] = clamp01(f * r[i] + y);
        g[i] = clamp01(f * g[i] + y);
        b[i] = clamp01(f * b[i] + y);
      }
    } else if (step == 3 && d.hue && *d.hue != 0.0) {
      const float shift = static_cast<float>(*d.hue);
      for (int64_t i = 0; i < n; ++i) shift_hue(r[i], g[i], b[i], shift);
    }
  }
}

ImageTransform ImageTransform::imagenet_train(int64_t crop) {
  ImageTransform t;
  t.train = true;
  t.crop_size = crop;
  t.resize_size = round_half_even(double(crop) * 256.0 / 224.0);
  return t;
}

ImageTransform ImageTransform::imagenet_eval(int64_t crop) {
  ImageTransform t = imagenet_train(crop);
  t.train = false;
  return t;
}

CropBox random_crop_box(int64_t height, int64_t width, int64_t crop, int64_t padding, Rng& rng) {
  const int64_t h = height + 2 * padding, w = width + 2 * padding;
  if (h < crop || w < crop) {
    throw std::invalid_argument(fmt::format("RandomCrop: a {}x{} image padded by {} is smaller "
                                            "than the {}x{} crop", height, width, padding, crop,
                                            crop));
  }
  const auto top = uniform_int(rng, 0, h - crop);
  const auto left = uniform_int(rng, 0, w - crop);
  return {top - padding, left - padding, crop, crop};
}

torch::Tensor ImageTransform::operator()(const torch::Tensor& image, Rng& rng) const {
  check_image(image, "ImageTransform");
  torch::Tensor pixels;
  if (train && train_crop == TrainCrop::kRandomCrop) {
    const auto resized = resize_shorter_side(image, resize_size);
    pixels = crop(resized,
                  random_crop_box(resized.size(0), resized.size(1), crop_size, padding, rng));
    if (flip && uniform(rng, 0.0, 1.0) < 0.5) pixels = hflip(pixels);
  } else if (train) {
    const auto box = random_resized_crop_box(image.size(0), image.size(1), range, rng);
    pixels = resized_crop(image, box, crop_size, crop_size);
    if (flip && uniform(rng, 0.0, 1.0) < 0.5) pixels = hflip(pixels);
  } else {
    pixels = center_crop(resize_shorter_side(image, resize_size), crop_size, crop_size);
  }
  auto out = to_float_chw(pixels);
  if (train && jitter.enabled()) apply_color_jitter_(out, draw_color_jitter(jitter, rng));
  normalize_(out, mean, std);
  return out;
}

}  // namespace fsa::data
