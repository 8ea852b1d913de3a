#include "fsa/viz/overlay.h"

#include <fmt/format.h>
#include <torch/nn/functional/upsampling.h>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <stdexcept>

#include "mat.h"

namespace fs = std::filesystem;

namespace fsa::viz {

namespace detail {

cv::Mat to_mat(const torch::Tensor& rgb) {
  check_rgb(rgb, "image");
  auto c = rgb.to(torch::kCPU).contiguous();
  return cv::Mat(int(c.size(0)), int(c.size(1)), CV_8UC3, c.data_ptr<uint8_t>()).clone();
}

torch::Tensor to_tensor(const cv::Mat& m) {
  CV_Assert(m.type() == CV_8UC3);
  auto c = m.isContinuous() ? m : m.clone();
  return torch::from_blob(c.data, {c.rows, c.cols, 3}, torch::kUInt8).clone();
}

void check_rgb(const torch::Tensor& rgb, const char* what) {
  if (!rgb.defined() || rgb.dim() != 3 || rgb.size(2) != 3 || rgb.scalar_type() != torch::kUInt8) {
    throw std::invalid_argument(
        fmt::format("{}: expected an RGB picture uint8 [H, W, 3], got {} {}", what,
                    rgb.defined() ? std::string(c10::toString(rgb.scalar_type())) : "undefined",
                    rgb.defined() ? fmt::format("{}", fmt::join(rgb.sizes(), "x")) : ""));
  }
}

}  // namespace detail

torch::Tensor to_rgb(const torch::Tensor& chw) {
  if (chw.dim() != 3 || (chw.size(0) != 1 && chw.size(0) != 3)) {
    throw std::invalid_argument(
        fmt::format("to_rgb: expected an image [C, H, W] with C = 1 or 3, got [{}]",
                    fmt::join(chw.sizes(), ", ")));
  }
  auto c = chw.to(torch::kCPU, torch::kUInt8);
  if (c.size(0) == 1) c = c.expand({3, c.size(1), c.size(2)});
  return c.permute({1, 2, 0}).contiguous();
}

torch::Tensor enlarge(const torch::Tensor& rgb, int64_t factor) {
  if (factor < 1) throw std::invalid_argument(fmt::format("enlarge: factor {} < 1", factor));
  if (factor == 1) return rgb;
  return rgb.repeat_interleave(factor, /*dim=*/0).repeat_interleave(factor, /*dim=*/1);
}

int64_t enlargement_for(int64_t height, int64_t width, int64_t min_side) {
  const auto side = std::max<int64_t>(1, std::min(height, width));
  return std::max<int64_t>(1, (min_side + side - 1) / side);
}

torch::Tensor resize_bilinear(const torch::Tensor& map, int64_t height, int64_t width) {
  if (map.dim() != 2) {
    throw std::invalid_argument(fmt::format("resize_bilinear: expected a map [h, w], got [{}]",
                                            fmt::join(map.sizes(), ", ")));
  }
  namespace F = torch::nn::functional;
  // align_corners = false is cv::resize's INTER_LINEAR geometry (half-pixel centres).
  auto up = F::interpolate(map.to(torch::kFloat32).unsqueeze(0).unsqueeze(0),
                           F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{height, width})
                               .mode(torch::kBilinear)
                               .align_corners(false));
  return up.squeeze(0).squeeze(0).to(torch::kCPU).contiguous();
}

torch::Tensor jet(const torch::Tensor& values) {
  if (values.dim() != 2) {
    throw std::invalid_argument(
        fmt::format("jet: expected values [H, W], got [{}]", fmt::join(values.sizes(), ", ")));
  }
  auto q = (values.to(torch::kCPU, torch::kFloat32).clamp(0, 1) * 255)
               .round()
               .to(torch::kUInt8)
               .contiguous();
  cv::Mat grey(int(q.size(0)), int(q.size(1)), CV_8UC1, q.data_ptr<uint8_t>());
  cv::Mat bgr, rgb;
  cv::applyColorMap(grey, bgr, cv::COLORMAP_JET);
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return detail::to_tensor(rgb);
}

torch::Tensor overlay_cam(const torch::Tensor& rgb, const torch::Tensor& cam, double alpha) {
  detail::check_rgb(rgb, "overlay_cam");
  if (!(alpha >= 0 && alpha <= 1)) {
    throw std::invalid_argument(fmt::format("overlay_cam: alpha {} is outside [0, 1]", alpha));
  }
  auto image = rgb.to(torch::kCPU);
  auto heat = jet(resize_bilinear(cam, image.size(0), image.size(1)));
  auto out = image.to(torch::kFloat32) * float(1 - alpha) + heat.to(torch::kFloat32) * float(alpha);
  return out.round().clamp(0, 255).to(torch::kUInt8);
}

void write_png(const std::string& path, const torch::Tensor& rgb) {
  auto m = detail::to_mat(rgb);
  cv::cvtColor(m, m, cv::COLOR_RGB2BGR);
  const auto parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  bool ok = false;
  try {
    ok = cv::imwrite(path, m);
  } catch (const cv::Exception& e) {
    throw std::runtime_error(fmt::format("cannot write image '{}': {}", path, e.what()));
  }
  if (!ok) throw std::runtime_error(fmt::format("cannot write image '{}'", path));
}

torch::Tensor read_png(const std::string& path) {
  cv::Mat m = cv::imread(path, cv::IMREAD_COLOR);
  if (m.empty()) throw std::runtime_error(fmt::format("cannot read image '{}'", path));
  cv::cvtColor(m, m, cv::COLOR_BGR2RGB);
  return detail::to_tensor(m);
}

std::string sanitize_name(const std::string& name) {
  std::string out;
  for (unsigned char ch : name) {
    // Bytes of multi-byte UTF-8 characters (>= 0x80) stay: "oiseau_ß" is a
    // fine file name, "oiseau___" is not a name.
    const bool keep = std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch >= 0x80;
    out += keep ? char(ch) : '_';
  }
  // A leading dot would make "." or ".." (or a hidden file) of a class name.
  if (out.empty() || out[0] == '.') out.insert(out.begin(), '_');
  // File names hold at most 255 bytes, and callers add a prefix and suffix:
  // cut long names at a character boundary (not inside a UTF-8 sequence).
  constexpr size_t kMaxBytes = 100;
  if (out.size() > kMaxBytes) {
    size_t cut = kMaxBytes;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
  }
  return out;
}

}  // namespace fsa::viz
