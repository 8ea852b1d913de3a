// Pictures of class activation maps: an image with its CAM laid over it in
// OpenCV's jet colours, as pure functions on tensors. Images are RGB uint8
// tensors [H, W, 3] (row-major, channels last, on the CPU) so that this header
// needs no OpenCV; the drawing itself is done with OpenCV inside the library.
#pragma once

#include <torch/types.h>

#include <string>

namespace fsa::viz {

/// A dataset image uint8 [C, H, W] (C = 1 or 3, as data::ImageSet holds them,
/// on any device) as an RGB picture uint8 [H, W, 3] on the CPU; one channel
/// is repeated to three. Throws std::invalid_argument for another shape.
torch::Tensor to_rgb(const torch::Tensor& chw);

/// Nearest-neighbour enlargement by an integer factor: every pixel of
/// rgb uint8 [H, W, 3] becomes a factor×factor block of uint8
/// [factor·H, factor·W, 3]. Throws std::invalid_argument if factor < 1.
torch::Tensor enlarge(const torch::Tensor& rgb, int64_t factor);

/// The factor that enlarges an image of the given size so that its shorter
/// side is at least `min_side` pixels (1 if it already is): 32×32 → 4 for 128.
int64_t enlargement_for(int64_t height, int64_t width, int64_t min_side = 128);

/// Bilinear resampling of a map float [h, w] to float [height, width], with
/// cv::resize's INTER_LINEAR geometry (pixel centres aligned: source
/// coordinate (x + 0.5)·w/width − 0.5, clamped at the borders). Runs on the
/// map's device; returns a CPU tensor.
torch::Tensor resize_bilinear(const torch::Tensor& map, int64_t height, int64_t width);

/// OpenCV's COLORMAP_JET of values float [H, W] in [0, 1] (clamped): each
/// value v is quantised to round(255·v) and looked up in cv::applyColorMap's
/// table (0 → dark blue, 255 → dark red). Returns RGB uint8 [H, W, 3].
torch::Tensor jet(const torch::Tensor& values);

/// The image with its class activation map laid over it:
///   heat = jet(resize_bilinear(cam, H, W)),
///   out  = round((1 − alpha)·image + alpha·heat), per channel, saturated to uint8.
/// rgb: uint8 [H, W, 3]; cam: float [h, w] in [0, 1] (METHOD.md Phase II: the
/// min–max-normalised Grad-CAM), any size; alpha in [0, 1] (0.4: 40% heat).
/// Returns uint8 [H, W, 3]. Throws std::invalid_argument on a bad shape or alpha.
torch::Tensor overlay_cam(const torch::Tensor& rgb, const torch::Tensor& cam, double alpha = 0.4);

/// Writes rgb uint8 [H, W, 3] as a PNG, creating the parent folder. Throws
/// std::runtime_error naming the path if it cannot be written.
void write_png(const std::string& path, const torch::Tensor& rgb);

/// Reads an image file as RGB uint8 [H, W, 3]; throws std::runtime_error naming
/// the path if it cannot be decoded.
torch::Tensor read_png(const std::string& path);

/// A file-name-safe form of a class name: ASCII characters other than
/// letters, digits, '-', '_' and '.' become '_' ("T-shirt/top" →
/// "T-shirt_top"); non-ASCII (UTF-8) characters stay ("oiseau_ß"); a name
/// that is empty or starts with '.' gets a leading '_'; names are cut to at
/// most 100 bytes (at a character boundary), leaving room in a file name.
std::string sanitize_name(const std::string& name);

}  // namespace fsa::viz
