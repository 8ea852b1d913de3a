// Decoding and ImageNet-style augmentation of single images with torchvision's
// semantics (CONVENTIONS.md, "Transforms"): RandomResizedCrop,
// RandomHorizontalFlip, ColorJitter, Resize, CenterCrop, ToTensor, Normalize.
// Images are CPU tensors: decoded and geometric steps use uint8 [H, W, 3] RGB
// (contiguous, HWC); ToTensor turns them into float [3, H, W] in [0, 1], on
// which colour jitter and normalisation work in place (torchvision's float
// path: no rounding between the jitter's steps).
// Every random step takes an explicit generator and has a deterministic core
// (a given crop box, given jitter factors) that the random one calls.
#pragma once

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace fsa::data {

/// The generator every random transform draws from. Draws are made from its
/// raw 64-bit output (not std:: distributions), so they are identical across
/// standard libraries.
using Rng = std::mt19937_64;

/// Uniform in [lo, hi) from 53 random bits.
double uniform(Rng& rng, double lo, double hi);
/// Uniform integer in [lo, hi] (inclusive, hi >= lo), without modulo bias.
int64_t uniform_int(Rng& rng, int64_t lo, int64_t hi);

/// torchvision's ImageNet normalisation.
inline const std::vector<double> kImageNetMean{0.485, 0.456, 0.406};
inline const std::vector<double> kImageNetStd{0.229, 0.224, 0.225};

/// Python's round(): to the nearest integer, halves to the even one
/// (round(0.5) = 0, round(1.5) = 2, round(2.5) = 2).
int64_t round_half_even(double x);

/// Decodes a JPEG, PNG, BMP, ... file into uint8 [H, W, 3] RGB, as PIL's
/// Image.open(path).convert("RGB") in torchvision's default loader:
/// grayscale is repeated to three channels, CMYK JPEGs are converted, the
/// alpha channel of PNGs is dropped, EXIF orientation is ignored.
/// Throws DataError naming the path for a missing or unreadable file, data
/// that no decoder accepts, and a truncated JPEG (no end-of-image marker after
/// the last scan: PIL's "image file is truncated").
torch::Tensor decode_image(const std::string& path);

/// decode_image on bytes in memory; `name` is used in messages.
torch::Tensor decode_image(const std::vector<uint8_t>& bytes, const std::string& name);

/// A crop rectangle in pixels. top/left may be negative and the box may
/// extend past the image: crop() fills the outside with zeros.
struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
  bool operator==(const CropBox& o) const {
    return top == o.top && left == o.left && height == o.height && width == o.width;
  }
};

/// RandomResizedCrop's ranges: area fraction and aspect ratio w/h.
struct ResizedCropRange {
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
};

/// torchvision's RandomResizedCrop.get_params for an H×W image: up to 10
/// tries of area = H·W·U(scale), log-ratio = U(log ratio_min, log
/// ratio_max), w = round(√(area·r)), h = round(√(area/r)) (half to even),
/// accepted if 0 < w ≤ W and 0 < h ≤ H, then top ~ U{0..H−h}, left ~
/// U{0..W−w}; otherwise fallback_crop_box.
CropBox random_resized_crop_box(int64_t height, int64_t width, const ResizedCropRange& range,
                                Rng& rng);

/// The fallback of random_resized_crop_box: the whole image if its ratio W/H
/// lies in the range, else the largest centred box at the nearest bound
/// (w = W, h = round(W / ratio_min) or h = H, w = round(H · ratio_max)),
/// top = (H − h) // 2, left = (W − w) // 2.
CropBox fallback_crop_box(int64_t height, int64_t width, const ResizedCropRange& range);

/// The pixels of `box` (zeros outside the image): uint8 [box.h, box.w, 3].
torch::Tensor crop(const torch::Tensor& image, const CropBox& box);

/// Resizes uint8 [H, W, 3] to [out_h, out_w, 3]: bilinear where a side grows
/// (cv::INTER_LINEAR, pixel centres aligned as torchvision), area averaging
/// where it shrinks (cv::INTER_AREA, the antialiasing torchvision applies by
/// default since 0.17), each axis separately when one grows and one shrinks.
/// Values may differ from PIL's by a few grey levels. Returns the input when
/// the size is unchanged.
torch::Tensor resize(const torch::Tensor& image, int64_t out_height, int64_t out_width);

/// crop(image, box) resized to out_h × out_w: RandomResizedCrop's core.
torch::Tensor resized_crop(const torch::Tensor& image, const CropBox& box, int64_t out_height,
                           int64_t out_width);

/// Mirror image left–right: uint8 [H, W, 3] → uint8 [H, W, 3].
torch::Tensor hflip(const torch::Tensor& image);

/// Resize(size)'s output size for an H×W image: the shorter side becomes
/// `size`, the longer int(size · long / short) (truncated). Returns {h, w}.
std::pair<int64_t, int64_t> shorter_side_size(int64_t height, int64_t width, int64_t size);

/// Resize(size): resize(image, shorter_side_size(H, W, size)).
torch::Tensor resize_shorter_side(const torch::Tensor& image, int64_t size);

/// CenterCrop's box: top = round((H − h)/2), left = round((W − w)/2), half to
/// even; where the crop is larger than the image, the image is zero-padded by
/// (h − H) // 2 before (top = −that), as torchvision pads.
CropBox center_crop_box(int64_t height, int64_t width, int64_t crop_height, int64_t crop_width);

/// RandomCrop(crop, padding)'s box on an H×W image, in the unpadded image's
/// coordinates (crop() fills the padding with zeros). Throws
/// std::invalid_argument if the padded image is smaller than the crop.
CropBox random_crop_box(int64_t height, int64_t width, int64_t crop, int64_t padding, Rng& rng);

/// crop(image, center_crop_box(...)).
torch::Tensor center_crop(const torch::Tensor& image, int64_t crop_height, int64_t crop_width);

/// ToTensor: uint8 [H, W, 3] → float [3, H, W] = pixel / 255.
torch::Tensor to_float_chw(const torch::Tensor& image);

/// Normalize, in place on float [3, H, W]: (x − mean[c]) / std[c]. Throws
/// std::invalid_argument unless mean and std have 3 entries.
void normalize_(torch::Tensor& image, const std::vector<double>& mean,
                const std::vector<double>& std);

/// ColorJitter's strengths: brightness, contrast and saturation x draw a
/// factor from U[max(0, 1 − x), 1 + x] (0 disables the step); hue h (≤ 0.5)
/// a shift from U[−h, h].
struct ColorJitter {
  double brightness = 0, contrast = 0, saturation = 0, hue = 0;
  bool enabled() const { return brightness > 0 || contrast > 0 || saturation > 0 || hue > 0; }
};

/// One draw of ColorJitter: the order of the four steps (0 brightness, 1
/// contrast, 2 saturation, 3 hue; a random permutation each call) and the
/// factors of the enabled ones.
struct JitterDraw {
  std::array<int, 4> order{0, 1, 2, 3};
  std::optional<double> brightness, contrast, saturation, hue;
};

/// torchvision's ColorJitter.get_params: the permutation first, then the
/// factors of the enabled steps in the order brightness, contrast,
/// saturation, hue.
JitterDraw draw_color_jitter(const ColorJitter& jitter, Rng& rng);

/// Applies a draw in place on float [3, H, W] RGB in [0, 1], each step
/// clamped to [0, 1] as torchvision's float path:
/// brightness x·f; contrast f·x + (1 − f)·mean(gray(x)) with gray = 0.2989 R +
/// 0.587 G + 0.114 B and the mean over the whole image; saturation
/// f·x + (1 − f)·gray(x) per pixel; hue: RGB → HSV, h ← (h + shift) mod 1,
/// back to RGB.
void apply_color_jitter_(torch::Tensor& image, const JitterDraw& draw);

/// A whole per-image pipeline, as the ImageNet-LT recipes use it (METHOD.md,
/// Phase I).
/// Training: RandomResizedCrop(crop_size, range) (or, with kRandomCrop,
/// Resize(resize_size) → RandomCrop(crop_size, padding)) →
/// RandomHorizontalFlip(0.5) (if flip) → ColorJitter(jitter) → ToTensor →
/// Normalize(mean, std).
/// Evaluation: Resize(resize_size) → CenterCrop(crop_size) → ToTensor →
/// Normalize(mean, std).
/// Training geometry `random_crop` (TrainCrop::kRandomCrop) is torchvision's
/// Resize(resize_size) → RandomCrop(crop_size, padding): the image padded
/// with `padding` zero pixels on every side, then a crop_size square at
/// top ~ U{0..H+2p−crop}, left ~ U{0..W+2p−crop} (drawn in that order): the
/// CIFAR augmentation, for small images where RandomResizedCrop's area range
/// throws most of the object away.
enum class TrainCrop { kRandomResizedCrop, kRandomCrop };

struct ImageTransform {
  bool train = true;
  int64_t crop_size = 224;
  int64_t resize_size = 256;  ///< evaluation, and training with kRandomCrop
  TrainCrop train_crop = TrainCrop::kRandomResizedCrop;
  int64_t padding = 4;  ///< kRandomCrop's zero padding per side
  ResizedCropRange range;
  bool flip = true;
  ColorJitter jitter{0.4, 0.4, 0.4, 0.0};
  std::vector<double> mean = kImageNetMean, std = kImageNetStd;

  /// The ImageNet training pipeline at `crop` pixels (224, or 112 reduced).
  static ImageTransform imagenet_train(int64_t crop = 224);
  /// The ImageNet test pipeline: resize to round(crop · 256/224), centre crop.
  static ImageTransform imagenet_eval(int64_t crop = 224);

  /// float [3, crop_size, crop_size] of a decoded uint8 [H, W, 3] image; the
  /// random steps draw from `rng` in pipeline order (evaluation draws nothing).
  torch::Tensor operator()(const torch::Tensor& image, Rng& rng) const;
};

}  // namespace fsa::data
