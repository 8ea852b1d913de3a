#include "fsa/data/image_transforms.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>

#include "fsa/data/image_set.h"
#include "test_util.h"

namespace fsa::data {
namespace {

using fsa::testing::TempDir;

int pixel(const torch::Tensor& img, int64_t y, int64_t x, int64_t c) {
  return img[y][x][c].item<int>();
}

TEST(RoundHalfEven, AsPython) {
  EXPECT_EQ(round_half_even(0.5), 0);
  EXPECT_EQ(round_half_even(1.5), 2);
  EXPECT_EQ(round_half_even(2.5), 2);
  EXPECT_EQ(round_half_even(3.5), 4);
  EXPECT_EQ(round_half_even(-0.5), 0);
  EXPECT_EQ(round_half_even(-1.5), -2);
  EXPECT_EQ(round_half_even(2.4999), 2);
  EXPECT_EQ(round_half_even(2.5001), 3);
  EXPECT_EQ(round_half_even(7.0), 7);
}

TEST(Crop, KnownBoxGivesKnownPixels) {
  const auto img = fsa::testing::pattern_image(20, 30);
  const CropBox box{3, 5, 4, 6};
  const auto out = crop(img, box);
  ASSERT_EQ(out.sizes(), torch::IntArrayRef({4, 6, 3}));
  for (int64_t y = 0; y < 4; ++y) {
    for (int64_t x = 0; x < 6; ++x) {
      for (int64_t c = 0; c < 3; ++c) {
        ASSERT_EQ(pixel(out, y, x, c), (7 * (y + 3) + 3 * (x + 5) + 50 * c) % 256);
      }
    }
  }
  // resized_crop to the box's own size is the crop itself.
  EXPECT_TRUE(torch::equal(resized_crop(img, box, 4, 6), out));
  // A box over the edge reads zeros outside.
  const auto edge = crop(img, {-1, 28, 3, 4});
  EXPECT_EQ(pixel(edge, 0, 0, 0), 0);
  EXPECT_EQ(pixel(edge, 1, 0, 1), (7 * 0 + 3 * 28 + 50) % 256);
  EXPECT_EQ(pixel(edge, 1, 2, 1), 0);
}

TEST(Resize, BilinearUpAndAreaDown) {
  // 2× enlargement of a horizontal ramp, centres aligned (torchvision's
  // align_corners=False): out x maps to in (x + 0.5)/2 − 0.5.
  auto ramp = torch::zeros({1, 4, 3}, torch::kUInt8);
  for (int x = 0; x < 4; ++x) ramp.index_put_({0, x}, 40 * x);
  const auto up = resize(ramp, 2, 8);
  ASSERT_EQ(up.sizes(), torch::IntArrayRef({2, 8, 3}));
  EXPECT_EQ(pixel(up, 0, 0, 0), 0);   // clamped at the border
  EXPECT_EQ(pixel(up, 0, 1, 0), 10);  // in 0.25
  EXPECT_EQ(pixel(up, 0, 2, 0), 30);  // in 0.75
  EXPECT_EQ(pixel(up, 1, 7, 2), 120);
  // Halving averages 2×2 blocks (antialiased, unlike plain bilinear sampling).
  auto checker = torch::zeros({4, 4, 3}, torch::kUInt8);
  checker.index_put_({torch::indexing::Slice(0, 4, 2)}, 200);
  const auto down = resize(checker, 2, 2);
  EXPECT_EQ(pixel(down, 0, 0, 0), 100);
  EXPECT_EQ(pixel(down, 1, 1, 2), 100);
  // A constant image stays constant, whatever the size.
  const auto flat = torch::full({37, 53, 3}, 77, torch::kUInt8);
  EXPECT_TRUE(torch::equal(resize(flat, 224, 224), torch::full({224, 224, 3}, 77, torch::kUInt8)));
  EXPECT_TRUE(torch::equal(resize(flat, 11, 90), torch::full({11, 90, 3}, 77, torch::kUInt8)));
}

TEST(Flip, MirrorsColumns) {
  const auto img = fsa::testing::pattern_image(5, 7);
  const auto f = hflip(img);
  for (int64_t x = 0; x < 7; ++x) {
    EXPECT_TRUE(torch::equal(f.select(1, x), img.select(1, 6 - x)));
  }
  EXPECT_TRUE(torch::equal(hflip(f), img));
}

TEST(ResizeShorterSide, SizesAsTorchvision) {
  // Resize(256): shorter side 256, longer int(256 · long / short).
  EXPECT_EQ(shorter_side_size(375, 500, 256), std::make_pair(int64_t{256}, int64_t{341}));
  EXPECT_EQ(shorter_side_size(500, 375, 256), std::make_pair(int64_t{341}, int64_t{256}));
  EXPECT_EQ(shorter_side_size(333, 500, 256), std::make_pair(int64_t{256}, int64_t{384}));
  EXPECT_EQ(shorter_side_size(100, 100, 256), std::make_pair(int64_t{256}, int64_t{256}));
  EXPECT_EQ(shorter_side_size(3, 1000, 256), std::make_pair(int64_t{256}, int64_t{85333}));
  // 256·499/300 = 425.81… → 425 (truncated, not rounded).
  EXPECT_EQ(shorter_side_size(300, 499, 256), std::make_pair(int64_t{256}, int64_t{425}));
  EXPECT_EQ(resize_shorter_side(fsa::testing::pattern_image(50, 80), 32).sizes(), torch::IntArrayRef({32, 51, 3}));
}

TEST(CenterCrop, OffsetsRoundHalfToEven) {
  // (H − h)/2 = 0.5 → 0, 1.5 → 2, 2.5 → 2.
  EXPECT_EQ(center_crop_box(225, 224, 224, 224), (CropBox{0, 0, 224, 224}));
  EXPECT_EQ(center_crop_box(227, 229, 224, 224), (CropBox{2, 2, 224, 224}));
  EXPECT_EQ(center_crop_box(256, 341, 224, 224), (CropBox{16, 58, 224, 224}));  // 58.5 → 58
  EXPECT_EQ(center_crop_box(256, 343, 224, 224), (CropBox{16, 60, 224, 224}));  // 59.5 → 60
  // Larger than the image: zero padding of (h − H) // 2 before.
  EXPECT_EQ(center_crop_box(5, 10, 8, 4), (CropBox{-1, 3, 8, 4}));
  const auto img = fsa::testing::pattern_image(9, 8);
  const auto c = center_crop(img, 4, 4);  // top round(2.5) = 2, left 2
  EXPECT_TRUE(torch::equal(c, crop(img, {2, 2, 4, 4})));
  const auto padded = center_crop(fsa::testing::pattern_image(2, 2), 5, 5);  // pad 1 before, 2 after
  EXPECT_EQ(pixel(padded, 0, 0, 1), 0);
  EXPECT_EQ(pixel(padded, 1, 1, 1), pixel(fsa::testing::pattern_image(2, 2), 0, 0, 1));
  EXPECT_EQ(pixel(padded, 2, 2, 2), pixel(fsa::testing::pattern_image(2, 2), 1, 1, 2));
  EXPECT_EQ(pixel(padded, 3, 3, 0), 0);
}

TEST(RandomResizedCrop, BoxesFollowTheRules) {
  Rng rng(7);
  const ResizedCropRange range;
  int fallback = 0;
  for (int i = 0; i < 2000; ++i) {
    const int64_t H = uniform_int(rng, 100, 500), W = uniform_int(rng, 100, 500);
    const auto b = random_resized_crop_box(H, W, range, rng);
    ASSERT_GT(b.height, 0);
    ASSERT_GT(b.width, 0);
    ASSERT_GE(b.top, 0);
    ASSERT_GE(b.left, 0);
    ASSERT_LE(b.top + b.height, H);
    ASSERT_LE(b.left + b.width, W);
    const double area = double(b.height * b.width) / double(H * W);
    const double ratio = double(b.width) / double(b.height);
    if (b == fallback_crop_box(H, W, range)) ++fallback;
    // Rounding w and h (sides >= √(0.08·100·100·3/4) ≈ 24) moves area and ratio by < 5%.
    ASSERT_GE(area, 0.08 * 0.95) << H << "x" << W;
    ASSERT_LE(area, 1.0);
    if (!(b == fallback_crop_box(H, W, range))) {
      ASSERT_LE(ratio, 4.0 / 3.0 * 1.05) << H << "x" << W;
      ASSERT_GE(ratio, 3.0 / 4.0 / 1.05) << H << "x" << W;
    }
  }
  EXPECT_LT(fallback, 500);  // mostly very wide or tall images
  // Same seed, same boxes.
  Rng a(3), b(3);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(random_resized_crop_box(375, 500, range, a),
              random_resized_crop_box(375, 500, range, b));
  }
}

TEST(RandomResizedCrop, FallbackIsCentredAndClampedToTheRatioRange) {
  const ResizedCropRange range;
  // Ratio 500/375 = 1.333… is inside [3/4, 4/3] (just): the whole image.
  EXPECT_EQ(fallback_crop_box(375, 500, range), (CropBox{0, 0, 375, 500}));
  // Too wide (W/H = 10): h = H, w = round(H · 4/3) = round(133.33) = 133.
  EXPECT_EQ(fallback_crop_box(100, 1000, range), (CropBox{0, 433, 100, 133}));
  // Too tall (W/H = 0.1): w = W, h = round(W / (3/4)) = round(133.33) = 133.
  EXPECT_EQ(fallback_crop_box(1000, 100, range), (CropBox{433, 0, 133, 100}));
  // A scale range nothing can satisfy forces the fallback.
  ResizedCropRange impossible;
  impossible.scale_min = impossible.scale_max = 5.0;
  Rng rng(1);
  EXPECT_EQ(random_resized_crop_box(100, 1000, impossible, rng), (CropBox{0, 433, 100, 133}));
  // A 3×8 strip is too wide: h = 3, w = round(3 · 4/3) = 4, left (8 − 4) // 2 = 2.
  EXPECT_EQ(fallback_crop_box(3, 8, range), (CropBox{0, 2, 3, 4}));
}

TEST(RandomCrop, PaddedCropsCoverEveryOffsetAndPadWithZeros) {
  // 32×32 padded by 4: a 32 crop starts at 0..8 of the padded image, i.e.
  // top and left in −4..4 of the image; every offset appears in 2,000 draws.
  Rng rng(3);
  std::set<int64_t> tops, lefts;
  for (int i = 0; i < 2000; ++i) {
    const auto b = random_crop_box(32, 32, 32, 4, rng);
    ASSERT_EQ(b.height, 32);
    ASSERT_EQ(b.width, 32);
    tops.insert(b.top);
    lefts.insert(b.left);
  }
  EXPECT_EQ(tops, (std::set<int64_t>{-4, -3, -2, -1, 0, 1, 2, 3, 4}));
  EXPECT_EQ(lefts, tops);
  // The draws, in torchvision's order: top first, then left.
  Rng a(9), b(9);
  const auto box = random_crop_box(32, 40, 30, 2, a);
  const auto top = uniform_int(b, 0, 36 - 30), left = uniform_int(b, 0, 44 - 30);
  EXPECT_EQ(box, (CropBox{top - 2, left - 2, 30, 30}));
  // A box at (−4, −4): the first four rows and columns are the zero padding.
  const auto img = fsa::testing::pattern_image(32, 32);
  const auto c = crop(img, CropBox{-4, -4, 32, 32});
  EXPECT_EQ(c.narrow(0, 0, 4).sum().item<int64_t>(), 0);
  EXPECT_EQ(c.narrow(1, 0, 4).sum().item<int64_t>(), 0);
  EXPECT_EQ(pixel(c, 4, 4, 1), pixel(img, 0, 0, 1));
  EXPECT_THROW(random_crop_box(20, 20, 32, 4, rng), std::invalid_argument);
}

TEST(ImageTransform, RandomCropPipelineOnSmallImages) {
  ImageTransform t;
  t.train_crop = TrainCrop::kRandomCrop;
  t.crop_size = 32;
  t.resize_size = 32;
  t.padding = 4;
  t.jitter = {};
  t.flip = false;
  t.mean = {0, 0, 0};
  t.std = {1, 1, 1};
  const auto img = fsa::testing::pattern_image(32, 32);
  Rng r1(5), r2(5);
  const auto out = t(img, r1);
  ASSERT_EQ(out.sizes(), torch::IntArrayRef({3, 32, 32}));
  // The same pixels as the box drawn from the same generator, scaled to [0, 1].
  const auto box = random_crop_box(32, 32, 32, 4, r2);
  const auto expected = crop(img, box).permute({2, 0, 1}).to(torch::kFloat32) / 255.0;
  EXPECT_TRUE(torch::allclose(out, expected));
}

TEST(ToTensorNormalize, Values) {
  auto img = torch::zeros({1, 2, 3}, torch::kUInt8);
  img.index_put_({0, 0}, torch::tensor({255, 0, 51}, torch::kUInt8));
  auto t = to_float_chw(img);
  ASSERT_EQ(t.sizes(), torch::IntArrayRef({3, 1, 2}));
  EXPECT_FLOAT_EQ(t[0][0][0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(t[2][0][0].item<float>(), 0.2f);
  normalize_(t, kImageNetMean, kImageNetStd);
  EXPECT_NEAR(t[0][0][0].item<float>(), (1.0 - 0.485) / 0.229, 1e-5);
  EXPECT_NEAR(t[1][0][0].item<float>(), (0.0 - 0.456) / 0.224, 1e-5);
  EXPECT_NEAR(t[2][0][0].item<float>(), (0.2 - 0.406) / 0.225, 1e-5);
  EXPECT_NEAR(t[2][0][1].item<float>(), (0.0 - 0.406) / 0.225, 1e-5);
  EXPECT_THROW(normalize_(t, {0.5}, {0.5}), std::invalid_argument);
}

TEST(ColorJitter, StepsAsTorchvisionFloatPath) {
  torch::manual_seed(0);
  const auto x = torch::rand({3, 6, 5});
  const auto gray = 0.2989 * x[0] + 0.587 * x[1] + 0.114 * x[2];
  auto apply = [&](JitterDraw d) {
    auto y = x.clone();
    apply_color_jitter_(y, d);
    return y;
  };
  JitterDraw d;
  EXPECT_TRUE(torch::equal(apply(d), x));  // nothing drawn: unchanged
  d.brightness = 1.5;
  EXPECT_TRUE(torch::allclose(apply(d), (x * 1.5).clamp(0, 1), 1e-6, 1e-6));
  d = {};
  d.contrast = 0.3;
  EXPECT_TRUE(torch::allclose(apply(d), (0.3 * x + 0.7 * gray.mean()).clamp(0, 1), 1e-5, 1e-5));
  d = {};
  d.contrast = 0.0;  // the grayscale mean everywhere
  EXPECT_TRUE(torch::allclose(apply(d), gray.mean().expand({3, 6, 5}), 1e-5, 1e-5));
  d = {};
  d.saturation = 0.0;  // grayscale
  EXPECT_TRUE(torch::allclose(apply(d), gray.unsqueeze(0).expand({3, 6, 5}), 1e-5, 1e-5));
  d = {};
  d.saturation = 1.7;
  EXPECT_TRUE(torch::allclose(apply(d), (1.7 * x - 0.7 * gray).clamp(0, 1), 1e-5, 1e-5));
  // Hue: pure red shifted by 1/3 is pure green, by −1/3 pure blue; gray stays.
  auto rgb = torch::zeros({3, 1, 3});
  rgb[0][0][0] = 1.0f;
  rgb.select(2, 1).fill_(0.4f);
  rgb[0][0][2] = 0.8f;
  rgb[1][0][2] = 0.6f;
  rgb[2][0][2] = 0.2f;  // (0.8, 0.6, 0.2): hue 1/9, saturation 0.75, value 0.8
  d = {};
  d.hue = 1.0 / 3.0;
  auto h = rgb.clone();
  apply_color_jitter_(h, d);
  EXPECT_NEAR(h[0][0][0].item<float>(), 0.0f, 1e-5);
  EXPECT_NEAR(h[1][0][0].item<float>(), 1.0f, 1e-5);
  EXPECT_NEAR(h[2][0][0].item<float>(), 0.0f, 1e-5);
  EXPECT_TRUE(torch::allclose(h.select(2, 1), rgb.select(2, 1), 1e-6, 1e-6));
  // hue 1/9 + 1/3 = 4/9: between green (1/3) and cyan (1/2): (p, v, t) with
  // v = 0.8, p = 0.2, t = v(1 − s(1 − f)), f = 6·4/9 − 2 = 2/3 → 0.6.
  EXPECT_NEAR(h[0][0][2].item<float>(), 0.2f, 1e-5);
  EXPECT_NEAR(h[1][0][2].item<float>(), 0.8f, 1e-5);
  EXPECT_NEAR(h[2][0][2].item<float>(), 0.6f, 1e-5);
  d.hue = -1.0 / 3.0;
  h = rgb.clone();
  apply_color_jitter_(h, d);
  EXPECT_NEAR(h[2][0][0].item<float>(), 1.0f, 1e-5);
  EXPECT_NEAR(h[0][0][0].item<float>(), 0.0f, 1e-5);
  // The order matters: brightness 2 then contrast 0.5 differs from the reverse.
  d = {};
  d.brightness = 2.0;
  d.contrast = 0.5;
  d.order = {0, 1, 2, 3};
  const auto bc = apply(d);
  d.order = {1, 0, 2, 3};
  const auto cb = apply(d);
  auto b_then_c = (x * 2).clamp(0, 1);
  const auto g2 = (0.2989 * b_then_c[0] + 0.587 * b_then_c[1] + 0.114 * b_then_c[2]).mean();
  EXPECT_TRUE(torch::allclose(bc, (0.5 * b_then_c + 0.5 * g2).clamp(0, 1), 1e-5, 1e-5));
  EXPECT_TRUE(
      torch::allclose(cb, ((0.5 * x + 0.5 * gray.mean()).clamp(0, 1) * 2).clamp(0, 1), 1e-5, 1e-5));
  EXPECT_FALSE(torch::allclose(bc, cb));
}

TEST(ColorJitter, DrawsFactorsInRangeAndEveryOrder) {
  Rng rng(11);
  const ColorJitter j{0.4, 0.4, 1.5, 0.1};
  std::set<std::array<int, 4>> orders;
  for (int i = 0; i < 2000; ++i) {
    const auto d = draw_color_jitter(j, rng);
    orders.insert(d.order);
    ASSERT_TRUE(d.brightness && d.contrast && d.saturation && d.hue);
    ASSERT_GE(*d.brightness, 0.6);
    ASSERT_LE(*d.brightness, 1.4);
    ASSERT_GE(*d.saturation, 0.0);  // max(0, 1 − 1.5)
    ASSERT_LE(*d.saturation, 2.5);
    ASSERT_GE(*d.hue, -0.1);
    ASSERT_LE(*d.hue, 0.1);
  }
  EXPECT_EQ(orders.size(), 24u);  // all permutations of the four steps
  const auto none = draw_color_jitter({0.4, 0, 0, 0}, rng);
  EXPECT_TRUE(none.brightness && !none.contrast && !none.saturation && !none.hue);
}

TEST(ImageTransform, TrainAndEvalPipelines) {
  const auto img = fsa::testing::pattern_image(375, 500);
  const auto train = ImageTransform::imagenet_train();
  Rng a(5), b(5);
  const auto x = train(img, a);
  ASSERT_EQ(x.sizes(), torch::IntArrayRef({3, 224, 224}));
  EXPECT_EQ(x.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(x, train(img, b)));
  EXPECT_FALSE(torch::equal(x, train(img, b)));  // the next draw differs
  const auto eval = ImageTransform::imagenet_eval(112);
  EXPECT_EQ(eval.resize_size, 128);
  const auto e = eval(img, a);
  ASSERT_EQ(e.sizes(), torch::IntArrayRef({3, 112, 112}));
  // Evaluation: resize to 128×170, centre crop at (8, 29), normalise.
  auto expected = to_float_chw(center_crop(resize(img, 128, 170), 112, 112));
  normalize_(expected, kImageNetMean, kImageNetStd);
  EXPECT_TRUE(torch::equal(e, expected));
  // With jitter and flip off, a training sample is a normalised resized crop.
  auto plain = ImageTransform::imagenet_train(64);
  plain.flip = false;
  plain.jitter = {};
  Rng c(9), d(9);
  const auto box = random_resized_crop_box(375, 500, plain.range, d);
  auto want = to_float_chw(resized_crop(img, box, 64, 64));
  normalize_(want, kImageNetMean, kImageNetStd);
  EXPECT_TRUE(torch::equal(plain(img, c), want));
}

class Decoding : public ::testing::Test {
 protected:
  /// A 20×30 BGR picture with distinct channels.
  cv::Mat picture() {
    cv::Mat m(20, 30, CV_8UC3);
    for (int y = 0; y < 20; ++y) {
      for (int x = 0; x < 30; ++x) m.at<cv::Vec3b>(y, x) = cv::Vec3b(10 + x, 100 + y, 200);
    }
    return m;
  }
  std::string message(const std::string& path) {
    try {
      decode_image(path);
    } catch (const DataError& e) {
      return e.what();
    }
    return "";
  }
  TempDir dir_;
};

TEST_F(Decoding, PngIsLosslessRgb) {
  ASSERT_TRUE(cv::imwrite(dir_ / "a.png", picture()));
  const auto img = decode_image(dir_ / "a.png");
  ASSERT_EQ(img.sizes(), torch::IntArrayRef({20, 30, 3}));
  EXPECT_EQ(pixel(img, 3, 4, 0), 200);  // R (OpenCV stores B, G, R)
  EXPECT_EQ(pixel(img, 3, 4, 1), 103);
  EXPECT_EQ(pixel(img, 3, 4, 2), 14);
}

TEST_F(Decoding, GrayscaleAndAlphaBecomeRgb) {
  cv::Mat g(8, 9, CV_8UC1);
  for (int y = 0; y < 8; ++y) {
    for (int x = 0; x < 9; ++x) g.at<uint8_t>(y, x) = uint8_t(20 * y + x);
  }
  ASSERT_TRUE(cv::imwrite(dir_ / "gray.png", g));
  const auto gi = decode_image(dir_ / "gray.png");
  ASSERT_EQ(gi.sizes(), torch::IntArrayRef({8, 9, 3}));
  for (int c = 0; c < 3; ++c) EXPECT_EQ(pixel(gi, 5, 7, c), 107);
  cv::Mat rgba(6, 7, CV_8UC4, cv::Scalar(30, 60, 90, 0));  // B, G, R, fully transparent
  rgba.at<cv::Vec4b>(2, 3) = cv::Vec4b(1, 2, 3, 128);
  ASSERT_TRUE(cv::imwrite(dir_ / "rgba.png", rgba));
  const auto ai = decode_image(dir_ / "rgba.png");
  ASSERT_EQ(ai.sizes(), torch::IntArrayRef({6, 7, 3}));
  // Alpha dropped, not composited (PIL's convert("RGB")).
  EXPECT_EQ(pixel(ai, 0, 0, 0), 90);
  EXPECT_EQ(pixel(ai, 0, 0, 2), 30);
  EXPECT_EQ(pixel(ai, 2, 3, 0), 3);
  EXPECT_EQ(pixel(ai, 2, 3, 2), 1);
}

TEST_F(Decoding, JpegDecodesAndTruncatedJpegIsAnError) {
  cv::Mat big(64, 80, CV_8UC3);
  cv::randu(big, 0, 255);
  cv::GaussianBlur(big, big, cv::Size(7, 7), 2.0);
  std::vector<uint8_t> jpeg;
  ASSERT_TRUE(cv::imencode(".jpg", big, jpeg, {cv::IMWRITE_JPEG_QUALITY, 95}));
  fsa::testing::write_bytes(dir_ / "ok.jpg", jpeg);
  const auto img = decode_image(dir_ / "ok.jpg");
  ASSERT_EQ(img.sizes(), torch::IntArrayRef({64, 80, 3}));
  cv::Mat rgb;
  cv::cvtColor(big, rgb, cv::COLOR_BGR2RGB);
  const auto want = torch::from_blob(rgb.data, {64, 80, 3}, torch::kUInt8).to(torch::kInt32);
  EXPECT_LT((img.to(torch::kInt32) - want).abs().to(torch::kFloat).mean().item<float>(), 4.0f);
  // Progressive JPEGs (several scans) are complete too.
  std::vector<uint8_t> progressive;
  ASSERT_TRUE(cv::imencode(".jpg", big, progressive, {cv::IMWRITE_JPEG_PROGRESSIVE, 1}));
  EXPECT_EQ(decode_image(progressive, "progressive.jpg").size(0), 64);
  // Cut in the middle of the scan, or just before the end marker.
  for (size_t keep : {jpeg.size() / 2, jpeg.size() - 2}) {
    fsa::testing::write_bytes(dir_ / "cut.jpg",
                              std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + long(keep)));
    const auto msg = message(dir_ / "cut.jpg");
    EXPECT_NE(msg.find(dir_ / "cut.jpg"), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  }
}

TEST_F(Decoding, CorruptAndMissingFilesNameThePath) {
  fsa::testing::write_bytes(dir_ / "junk.jpg", {1, 2, 3, 4, 5, 6, 7, 8, 9});
  EXPECT_NE(message(dir_ / "junk.jpg").find(dir_ / "junk.jpg"), std::string::npos);
  fsa::testing::write_bytes(dir_ / "empty.png", {});
  EXPECT_NE(message(dir_ / "empty.png").find("empty.png"), std::string::npos);
  EXPECT_NE(message(dir_ / "none.jpg").find("none.jpg' does not exist"), std::string::npos);
  std::vector<uint8_t> png;
  ASSERT_TRUE(cv::imencode(".png", picture(), png));
  png.resize(png.size() / 2);
  fsa::testing::write_bytes(dir_ / "cut.png", png);
  EXPECT_NE(message(dir_ / "cut.png").find("cut.png"), std::string::npos);
}

}  // namespace
}  // namespace fsa::data
