#include "fsa/data/preprocessing.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>

#include "fsa/data/image_transforms.h"
#include "fsa/data/transforms.h"

namespace fsa::data {
namespace {

/// PIL's convert("L") of uint8 [H, W, 3] RGB: L = (19595 R + 38470 G + 7471 B
/// + 2^15) >> 16, the ITU-R 601-2 luma in 16-bit fixed point. Returns uint8 [H, W, 1].
torch::Tensor luma(const torch::Tensor& rgb) {
  const auto x = rgb.to(torch::kInt32);
  const auto l = torch::div(
      x.select(2, 0) * 19595 + x.select(2, 1) * 38470 + x.select(2, 2) * 7471 + (1 << 15),
      1 << 16, "floor");
  return l.to(torch::kUInt8).unsqueeze(2);
}

const char* geometry_name(Geometry g) {
  return g == Geometry::kResize ? "resize" : "resize_center_crop";
}

std::string numbers(const std::vector<double>& v) {
  std::vector<std::string> out;
  for (const auto x : v) out.push_back(fmt::format("{:.4g}", x));
  return fmt::format("[{}]", fmt::join(out, ", "));
}

}  // namespace

torch::Tensor Preprocessing::pixels(const torch::Tensor& rgb) const {
  if (rgb.dim() != 3 || rgb.size(2) != 3 || rgb.scalar_type() != torch::kUInt8) {
    throw std::invalid_argument(
        fmt::format("Preprocessing: expected an RGB image uint8 [H, W, 3], got {} {}",
                    c10::toString(rgb.scalar_type()), c10::str(rgb.sizes())));
  }
  torch::Tensor out;
  if (geometry == Geometry::kResize) {
    out = data::resize(rgb.contiguous(), height, width);
  } else {
    out = center_crop(resize_shorter_side(rgb.contiguous(), resize), crop, crop);
  }
  if (channels == 1) out = luma(out);
  out = out.permute({2, 0, 1});
  if (pad > 0) out = torch::constant_pad_nd(out, {pad, pad, pad, pad}, 0);
  return out.contiguous();
}

torch::Tensor Preprocessing::input(const torch::Tensor& pixels) const {
  if (pixels.dim() != 4 || pixels.size(1) != channels) {
    throw std::invalid_argument(fmt::format(
        "Preprocessing: expected pixels uint8 [N, {}, H, W], got {}", channels,
        c10::str(pixels.sizes())));
  }
  if (geometry == Geometry::kResize) return normalize(pixels, mean, std);
  // ImageTransform's evaluation arithmetic, image by image: ToTensor, then
  // Normalize in place (the same float operations, so the same bits).
  std::vector<torch::Tensor> out;
  const auto cpu = pixels.cpu();
  for (int64_t i = 0; i < cpu.size(0); ++i) {
    auto x = to_float_chw(cpu[i].permute({1, 2, 0}).contiguous());
    normalize_(x, mean, std);
    out.push_back(x);
  }
  return torch::stack(out).to(pixels.device());
}

int64_t Preprocessing::input_height() const {
  return geometry == Geometry::kResize ? height + 2 * pad : crop;
}

int64_t Preprocessing::input_width() const {
  return geometry == Geometry::kResize ? width + 2 * pad : crop;
}

std::string Preprocessing::describe() const {
  std::string steps;
  if (geometry == Geometry::kResize) {
    steps = fmt::format("Resize(({}, {}))", height, width);
  } else {
    steps = fmt::format("Resize({}) → CenterCrop({})", resize, crop);
  }
  if (channels == 1) steps += " → Grayscale()";
  if (pad > 0) steps += fmt::format(" → Pad({})", pad);
  return steps + fmt::format(" → ToTensor() → Normalize(mean={}, std={})", numbers(mean),
                             numbers(std));
}

nlohmann::json Preprocessing::to_json() const {
  return {{"geometry", geometry_name(geometry)},
          {"channels", channels},
          {"height", height},
          {"width", width},
          {"pad", pad},
          {"resize", resize},
          {"crop", crop},
          {"mean", mean},
          {"std", std},
          {"torchvision", describe()}};
}

Preprocessing Preprocessing::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("preprocessing: expected a JSON object");
  auto integer = [&](const char* key, int64_t lo, int64_t hi) {
    if (!j.contains(key) || !j.at(key).is_number_integer()) {
      throw std::invalid_argument(fmt::format("preprocessing: '{}' is missing or not an integer",
                                              key));
    }
    const auto v = j.at(key).get<int64_t>();
    if (v < lo || v > hi) {
      throw std::invalid_argument(
          fmt::format("preprocessing: '{}' is {}; expected {} to {}", key, v, lo, hi));
    }
    return v;
  };
  auto values = [&](const char* key) {
    if (!j.contains(key) || !j.at(key).is_array()) {
      throw std::invalid_argument(fmt::format("preprocessing: '{}' is missing or not a list", key));
    }
    std::vector<double> out;
    for (const auto& x : j.at(key)) {
      if (!x.is_number()) {
        throw std::invalid_argument(fmt::format("preprocessing: '{}' holds a non-number", key));
      }
      out.push_back(x.get<double>());
    }
    return out;
  };
  Preprocessing p;
  const auto g = j.contains("geometry") && j.at("geometry").is_string()
                     ? j.at("geometry").get<std::string>()
                     : std::string();
  if (g == "resize") {
    p.geometry = Geometry::kResize;
  } else if (g == "resize_center_crop") {
    p.geometry = Geometry::kResizeCenterCrop;
  } else {
    throw std::invalid_argument(fmt::format(
        "preprocessing: 'geometry' is '{}'; expected 'resize' or 'resize_center_crop'", g));
  }
  constexpr int64_t kSide = 1 << 16;
  p.channels = integer("channels", 1, 3);
  if (p.channels == 2) throw std::invalid_argument("preprocessing: 'channels' is 2; expected 1 or 3");
  p.height = integer("height", 1, kSide);
  p.width = integer("width", 1, kSide);
  p.pad = integer("pad", 0, kSide);
  p.resize = integer("resize", 1, kSide);
  p.crop = integer("crop", 1, kSide);
  p.mean = values("mean");
  p.std = values("std");
  const auto n = p.mean.size();
  if (n != p.std.size() || (n != 1 && n != 3)) {
    throw std::invalid_argument(fmt::format(
        "preprocessing: 'mean' has {} values and 'std' {}; expected 1 or 3 of each", n,
        p.std.size()));
  }
  for (const auto s : p.std) {
    if (!(s > 0)) throw std::invalid_argument("preprocessing: 'std' holds a value that is not > 0");
  }
  return p;
}

bool Preprocessing::operator==(const Preprocessing& o) const {
  return geometry == o.geometry && channels == o.channels && height == o.height &&
         width == o.width && pad == o.pad && resize == o.resize && crop == o.crop &&
         mean == o.mean && std == o.std;
}

}  // namespace fsa::data
