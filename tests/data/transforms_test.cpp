#include "fsa/data/transforms.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace fsa::data {
namespace {

TEST(CropFlip, MatchesPerPixelDefinition) {
  auto images = torch::randint(1, 256, {3, 2, 6, 5}, torch::kInt64).to(torch::kUInt8);
  auto oy = torch::tensor({0L, 4L, 2L});
  auto ox = torch::tensor({4L, 0L, 1L});
  auto flip = torch::tensor({false, true, true});
  const int64_t pad = 2;
  auto out = crop_flip(images, pad, oy, ox, flip);
  ASSERT_EQ(out.sizes(), images.sizes());
  for (int64_t n = 0; n < 3; ++n) {
    for (int64_t c = 0; c < 2; ++c) {
      for (int64_t y = 0; y < 6; ++y) {
        for (int64_t x = 0; x < 5; ++x) {
          // Output (y, x) reads padded (oy + y, ox + x'), x' = x or W−1−x if flipped;
          // padded (py, px) is image (py − pad, px − pad) or 0 outside.
          const int64_t xs = flip[n].item<bool>() ? 4 - x : x;
          const int64_t sy = oy[n].item<int64_t>() + y - pad, sx = ox[n].item<int64_t>() + xs - pad;
          const int expected =
              (sy < 0 || sy >= 6 || sx < 0 || sx >= 5) ? 0 : images[n][c][sy][sx].item<int>();
          ASSERT_EQ(out[n][c][y][x].item<int>(), expected) << n << c << y << x;
        }
      }
    }
  }
}

TEST(CropFlip, RandomIsSeededAndKeepsPixelsInRange) {
  auto images = torch::randint(0, 256, {16, 3, 8, 8}, torch::kInt64).to(torch::kUInt8);
  auto a = random_crop_flip(images, 4, at::make_generator<at::CPUGeneratorImpl>(5));
  auto b = random_crop_flip(images, 4, at::make_generator<at::CPUGeneratorImpl>(5));
  EXPECT_TRUE(torch::equal(a, b));
  // With padding 0 and no offsets the only change is a flip: each row is the
  // original row or its mirror.
  auto c = random_crop_flip(images, 0, at::make_generator<at::CPUGeneratorImpl>(9));
  for (int64_t n = 0; n < 16; ++n) {
    EXPECT_TRUE(torch::equal(c[n], images[n]) || torch::equal(c[n], images[n].flip(2)));
  }
}

TEST(Normalize, PerChannelAndGrayExpansion) {
  auto images = torch::tensor({0, 255, 51, 102}, torch::kUInt8).view({1, 1, 2, 2});
  auto out = normalize(images, {0.5}, {0.25}, 3);
  ASSERT_EQ(out.sizes(), torch::IntArrayRef({1, 3, 2, 2}));
  // (51/255 − 0.5)/0.25 = (0.2 − 0.5)·4 = −1.2
  EXPECT_NEAR(out[0][2][1][0].item<float>(), -1.2f, 1e-5);
  EXPECT_NEAR(out[0][0][0][1].item<float>(), 2.0f, 1e-5);
  auto rgb = torch::full({1, 3, 1, 1}, 255, torch::kUInt8);
  auto o2 = normalize(rgb, {0.1, 0.2, 0.3}, {1.0, 2.0, 0.5}, 3);
  EXPECT_NEAR(o2[0][0][0][0].item<float>(), 0.9f, 1e-5);
  EXPECT_NEAR(o2[0][1][0][0].item<float>(), 0.4f, 1e-5);
  EXPECT_NEAR(o2[0][2][0][0].item<float>(), 1.4f, 1e-5);
}

}  // namespace
}  // namespace fsa::data
