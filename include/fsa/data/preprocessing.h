// How an image file becomes the network's input at evaluation. Every
// checkpoint records it (entry `preprocessing`, JSON text), so that a
// checkpoint can be used alone: `fsa predict` applies it to images of any size
// and gets, for a dataset's own test images, exactly the input that evaluation
// gives the network.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fsa::data {

/// The two evaluation geometries fsa uses.
///  - kResize: every image is resized to height × width (the size of the
///    dataset's own images: CIFAR 32×32, MNIST-style 28×28, an image folder's
///    common size; a no-op for them), then zero-padded by `pad` pixels on
///    every side (28×28 digits and garments to the 32×32 the CIFAR ResNets
///    take), then normalised by data::normalize.
///  - kResizeCenterCrop: torchvision's Resize(resize) → CenterCrop(crop) →
///    ToTensor → Normalize (list-file datasets; ImageTransform's evaluation
///    pipeline, same arithmetic).
enum class Geometry { kResize, kResizeCenterCrop };

struct Preprocessing {
  Geometry geometry = Geometry::kResize;
  int64_t channels = 3;               ///< 1: luma (as PIL's convert("L")), 3: RGB
  int64_t height = 32, width = 32;    ///< kResize: pixels before padding
  int64_t pad = 0;                    ///< kResize: zero pixels per side
  int64_t resize = 256, crop = 224;   ///< kResizeCenterCrop: shorter side, centre square
  std::vector<double> mean, std;      ///< per channel (1 or 3 entries), on [0, 1] pixels

  /// The geometry applied to a decoded image rgb uint8 [H, W, 3] (as
  /// decode_image returns it): uint8 [channels, H', W'], not normalised, the
  /// pixels pictures are drawn from. Throws std::invalid_argument for another shape.
  torch::Tensor pixels(const torch::Tensor& rgb) const;

  /// Network input float32 [N, 3, H', W'] of `pixels` uint8 [N, channels, H',
  /// W'] (any device; the result is on the same one). Throws
  /// std::invalid_argument for another channel count.
  torch::Tensor input(const torch::Tensor& pixels) const;

  /// Side of the network input: H' = height + 2·pad (or crop).
  int64_t input_height() const;
  int64_t input_width() const;

  /// The same steps written as torchvision transforms, for logs and users
  /// ("Resize(256) → CenterCrop(224) → ToTensor() → Normalize(mean=[0.485,
  /// 0.456, 0.406], std=[0.229, 0.224, 0.225])").
  std::string describe() const;

  /// {"geometry": "resize" | "resize_center_crop", "channels", "height",
  /// "width", "pad", "resize", "crop", "mean", "std", "torchvision"}; the
  /// last is describe(), for people, and is not read back.
  nlohmann::json to_json() const;
  /// Throws std::invalid_argument naming the field that is missing, of the
  /// wrong type or out of range.
  static Preprocessing from_json(const nlohmann::json& j);

  bool operator==(const Preprocessing& o) const;
};

}  // namespace fsa::data
