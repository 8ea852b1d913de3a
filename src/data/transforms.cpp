#include "fsa/data/transforms.h"

#include <fmt/format.h>

#include <stdexcept>

namespace fsa::data {

torch::Tensor crop_flip(const torch::Tensor& images, int64_t padding, const torch::Tensor& oy,
                        const torch::Tensor& ox, const torch::Tensor& flip) {
  const auto n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const auto dev = images.device();
  auto padded = torch::constant_pad_nd(images, {padding, padding, padding, padding}, 0);
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(dev);
  auto rows = oy.to(dev).view({n, 1}) + torch::arange(h, opts).view({1, h});  // [N, H]
  auto ar = torch::arange(w, opts).view({1, w});
  auto cols = ox.to(dev).view({n, 1}) +
              torch::where(flip.to(dev).view({n, 1}), (w - 1) - ar, ar);  // [N, W]
  auto by_rows = padded.gather(2, rows.view({n, 1, h, 1}).expand({n, c, h, w + 2 * padding}));
  return by_rows.gather(3, cols.view({n, 1, 1, w}).expand({n, c, h, w}));
}

CropFlipDraw draw_crop_flip(int64_t n, int64_t padding, at::Generator gen) {
  CropFlipDraw d;
  d.oy = torch::randint(0, 2 * padding + 1, {n}, gen, torch::kInt64);
  d.ox = torch::randint(0, 2 * padding + 1, {n}, gen, torch::kInt64);
  d.flip = torch::randint(0, 2, {n}, gen, torch::kInt64).to(torch::kBool);
  return d;
}

torch::Tensor random_crop_flip(const torch::Tensor& images, int64_t padding, at::Generator gen) {
  const auto d = draw_crop_flip(images.size(0), padding, gen);
  return crop_flip(images, padding, d.oy, d.ox, d.flip);
}

torch::Tensor normalize(const torch::Tensor& images, const std::vector<double>& mean,
                        const std::vector<double>& std, int64_t out_channels) {
  const auto c = images.size(1);
  if (c != 1 && c != out_channels) {
    throw std::invalid_argument(fmt::format("normalize: images have {} channels, expected 1 or {}",
                                            c, out_channels));
  }
  if (mean.size() != std.size() || (mean.size() != 1 && int64_t(mean.size()) != out_channels)) {
    throw std::invalid_argument("normalize: mean and std need 1 or out_channels entries");
  }
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(images.device());
  std::vector<float> m(out_channels), s(out_channels);
  for (int64_t i = 0; i < out_channels; ++i) {
    m[i] = static_cast<float>(mean.size() == 1 ? mean[0] : mean[i]);
    s[i] = static_cast<float>(std.size() == 1 ? std[0] : std[i]);
  }
  // (x/255 − m)/s = x·(1/(255 s)) − m/s: one fused multiply-add per pixel.
  std::vector<float> scale(out_channels), shift(out_channels);
  for (int64_t i = 0; i < out_channels; ++i) {
    scale[i] = 1.0f / (255.0f * s[i]);
    shift[i] = -m[i] / s[i];
  }
  auto x = images.to(opts);
  if (c == 1 && out_channels != 1) x = x.expand({-1, out_channels, -1, -1});
  auto sc = torch::tensor(scale, opts).view({1, out_channels, 1, 1});
  auto sh = torch::tensor(shift, opts).view({1, out_channels, 1, 1});
  return torch::addcmul(sh, x, sc).contiguous();
}

}  // namespace fsa::data
