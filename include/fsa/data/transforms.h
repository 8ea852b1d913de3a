// Batched augmentation and normalisation for small images held in memory
// (torchvision semantics: RandomCrop(32, padding=4), RandomHorizontalFlip,
// ToTensor, Normalize), run as tensor operations on the batch's device.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <vector>

namespace fsa::data {

/// Zero-pads each image by `padding` pixels, crops an H×W window at a uniform
/// random offset in [0, 2·padding]² and flips it horizontally with
/// probability 1/2, independently per image.
/// images: uint8 [N, C, H, W] on any device; returns uint8 [N, C, H, W].
/// Offsets and flips are drawn from `gen` (a CPU generator) for reproducibility.
torch::Tensor random_crop_flip(const torch::Tensor& images, int64_t padding,
                               at::Generator gen);

/// The offsets and flips random_crop_flip draws for n images, in its order
/// (oy, then ox, then flip): int64 [n], int64 [n], bool [n], on the CPU.
struct CropFlipDraw {
  torch::Tensor oy, ox, flip;
};
CropFlipDraw draw_crop_flip(int64_t n, int64_t padding, at::Generator gen);

/// The same crop and flip with given offsets: oy, ox int64 [N] in
/// [0, 2·padding], flip bool [N]. The deterministic core of random_crop_flip.
torch::Tensor crop_flip(const torch::Tensor& images, int64_t padding, const torch::Tensor& oy,
                        const torch::Tensor& ox, const torch::Tensor& flip);

/// (x/255 − mean[c]) / std[c], as float32 [N, out_channels, H, W]. A 1-channel
/// input is repeated to `out_channels` (with its single mean/std); mean and
/// std have 1 or out_channels entries.
torch::Tensor normalize(const torch::Tensor& images, const std::vector<double>& mean,
                        const std::vector<double>& std, int64_t out_channels = 3);

}  // namespace fsa::data
