#include "fsa/data/preprocessing.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <numeric>

#include "fsa/data/image_set.h"
#include "fsa/data/image_transforms.h"
#include "fsa/data/long_tail.h"
#include "fsa/data/transforms.h"
#include "fsa/io/config.h"
#include "test_util.h"

namespace fsa::data {
namespace {

using fsa::testing::TempDir;

TEST(Preprocessing, LumaIsPilsFixedPointFormula) {
  Preprocessing p;
  p.channels = 1;
  p.height = p.width = 1;
  p.mean = {0.5};
  p.std = {0.25};
  // PIL's L = (19595 R + 38470 G + 7471 B + 32768) >> 16, worked by hand.
  const std::vector<std::pair<std::array<int, 3>, int>> cases{
      {{255, 0, 0}, 76}, {{0, 255, 0}, 150}, {{0, 0, 255}, 29},
      {{255, 255, 255}, 255}, {{10, 20, 30}, 18}};
  for (const auto& [rgb, luma] : cases) {
    const auto image =
        torch::tensor({rgb[0], rgb[1], rgb[2]}).to(torch::kUInt8).view({1, 1, 3});
    const auto out = p.pixels(image);
    ASSERT_EQ(out.sizes(), torch::IntArrayRef({1, 1, 1}));
    EXPECT_EQ(out.item<int>(), luma) << rgb[0] << "," << rgb[1] << "," << rgb[2];
  }
}

TEST(Preprocessing, ResizeGeometryAtTheImagesOwnSizeIsNormalizeAlone) {
  Preprocessing p;  // 32×32 RGB
  p.mean = {0.4, 0.5, 0.6};
  p.std = {0.2, 0.25, 0.3};
  const auto image = fsa::testing::pattern_image(32, 32);
  const auto pixels = p.pixels(image);
  ASSERT_TRUE(torch::equal(pixels, image.permute({2, 0, 1})));
  const auto x = p.input(pixels.unsqueeze(0));
  ASSERT_EQ(x.sizes(), torch::IntArrayRef({1, 3, 32, 32}));
  EXPECT_TRUE(torch::equal(x, normalize(pixels.unsqueeze(0), p.mean, p.std)));
  // One value by hand, in double: pixel (3, 7, 2) = 7·3 + 3·7 + 50·2 = 142.
  EXPECT_NEAR(x[0][2][3][7].item<double>(), (142 / 255.0 - 0.6) / 0.3, 1e-6);
}

TEST(Preprocessing, TwentyEightPixelGreyImagesArePaddedByTwo) {
  Preprocessing p;
  p.channels = 1;
  p.height = p.width = 28;
  p.pad = 2;
  p.mean = {0.5};
  p.std = {0.5};
  const auto image = fsa::testing::pattern_image(28, 28);
  const auto out = p.pixels(image);
  ASSERT_EQ(out.sizes(), torch::IntArrayRef({1, 32, 32}));
  EXPECT_EQ(p.input_height(), 32);
  EXPECT_EQ(out.slice(1, 0, 2).sum().item<int64_t>(), 0);
  EXPECT_EQ(out.slice(2, 30, 32).sum().item<int64_t>(), 0);
  // Interior pixel (y, x) = image (y − 2, x − 2) in luma.
  const auto rgb = image[5][9];
  const int r = rgb[0].item<int>(), g = rgb[1].item<int>(), b = rgb[2].item<int>();
  EXPECT_EQ(out[0][7][11].item<int>(), (19595 * r + 38470 * g + 7471 * b + 32768) >> 16);
  EXPECT_THROW(p.input(torch::zeros({1, 3, 32, 32}, torch::kUInt8)), std::invalid_argument);
  EXPECT_THROW(p.pixels(torch::zeros({4, 4}, torch::kUInt8)), std::invalid_argument);
}

TEST(Preprocessing, CropGeometryIsImageTransformsEvaluationBitForBit) {
  auto eval = ImageTransform::imagenet_eval(32);
  eval.resize_size = 40;
  eval.mean = {0.45, 0.46, 0.47};
  eval.std = {0.21, 0.22, 0.23};
  Preprocessing p;
  p.geometry = Geometry::kResizeCenterCrop;
  p.resize = 40;
  p.crop = 32;
  p.mean = eval.mean;
  p.std = eval.std;
  Rng rng(3);
  std::vector<torch::Tensor> expected, pixels;
  for (const auto& [h, w] : std::vector<std::pair<int64_t, int64_t>>{{50, 70}, {97, 41}}) {
    const auto image = fsa::testing::pattern_image(h, w);
    expected.push_back(eval(image, rng));
    pixels.push_back(p.pixels(image));
  }
  const auto x = p.input(torch::stack(pixels));
  ASSERT_EQ(x.sizes(), torch::IntArrayRef({2, 3, 32, 32}));
  EXPECT_TRUE(torch::equal(x, torch::stack(expected)));
  EXPECT_EQ(p.describe(),
            "Resize(40) → CenterCrop(32) → ToTensor() → Normalize(mean=[0.45, 0.46, 0.47], "
            "std=[0.21, 0.22, 0.23])");
}

TEST(Preprocessing, JsonRoundTripAndNamedErrors) {
  Preprocessing p;
  p.geometry = Geometry::kResizeCenterCrop;
  p.resize = 144;
  p.crop = 128;
  p.mean = {0.485, 0.456, 0.406};
  p.std = {0.229, 0.224, 0.225};
  const auto j = p.to_json();
  EXPECT_EQ(j.at("torchvision").get<std::string>(), p.describe());
  EXPECT_TRUE(Preprocessing::from_json(nlohmann::json::parse(j.dump())) == p);
  auto message = [&](const std::function<void(nlohmann::json&)>& edit) {
    auto bad = j;
    edit(bad);
    return fsa::testing::error_message<std::invalid_argument>(
        [&] { Preprocessing::from_json(bad); });
  };
  EXPECT_NE(message([](auto& b) { b.erase("mean"); }).find("'mean'"), std::string::npos);
  EXPECT_NE(message([](auto& b) { b["channels"] = 2; }).find("'channels' is 2"),
            std::string::npos);
  EXPECT_NE(message([](auto& b) { b["crop"] = "224"; }).find("'crop'"), std::string::npos);
  EXPECT_NE(message([](auto& b) { b["geometry"] = "warp"; }).find("'warp'"), std::string::npos);
  EXPECT_NE(message([](auto& b) { b["std"] = {0.2, 0.0, 0.2}; }).find("'std'"),
            std::string::npos);
  EXPECT_NE(message([](auto& b) { b["std"] = {0.2}; }).find("3 values and 'std' 1"),
            std::string::npos);
}

TEST(Preprocessing, ADatasetsOwnTestImagesBecomeExactlyItsTestTensors) {
  TempDir dir;
  fsa::testing::make_image_folder(dir / "data", std::vector<int>(10, 2), 2);
  io::DatasetConfig d;
  d.name = "CIFAR-10-LT";
  d.root = dir / "data";
  d.imbalance_factor = 1;
  const auto data = load_long_tail_dataset(d, io::FinetuneConfig{}, 0, 1);
  EXPECT_TRUE(data.preprocessing == recorded_preprocessing(d));
  std::vector<std::string> classes;
  const auto files = list_image_folder(dir / "data/test", &classes);
  ASSERT_EQ(static_cast<int64_t>(files.size()), data.test.size());
  for (size_t i = 0; i < files.size(); ++i) {
    EXPECT_TRUE(torch::equal(data.preprocessing.pixels(decode_image(files[i].path)),
                             data.test.images[int64_t(i)]))
        << files[i].path;
  }
  const auto first = data.test.images.slice(0, 0, 4);
  EXPECT_TRUE(torch::equal(data.preprocessing.input(first),
                           normalize(first, data.mean, data.std)));
  d.name = "ImageFolder-LT";
  EXPECT_THROW(recorded_preprocessing(d), std::invalid_argument);
}

TEST(Preprocessing, MnistStyleDatasetsRecordTheirPadding) {
  TempDir dir;
  std::vector<uint8_t> labels(10);
  std::iota(labels.begin(), labels.end(), 0);
  fsa::testing::write_bytes(dir / "train-images-idx3-ubyte", fsa::testing::idx_images(10, 28, 28));
  fsa::testing::write_bytes(dir / "train-labels-idx1-ubyte", fsa::testing::idx_labels(labels));
  fsa::testing::write_bytes(dir / "t10k-images-idx3-ubyte", fsa::testing::idx_images(10, 28, 28));
  fsa::testing::write_bytes(dir / "t10k-labels-idx1-ubyte", fsa::testing::idx_labels(labels));
  io::DatasetConfig d;
  d.name = "Fashion-MNIST-LT";
  d.root = dir.path();
  d.imbalance_factor = 1;
  const auto data = load_long_tail_dataset(d, io::FinetuneConfig{}, 0, 1);
  EXPECT_EQ(data.preprocessing.channels, 1);
  EXPECT_EQ(data.preprocessing.pad, 2);
  EXPECT_TRUE(data.preprocessing == recorded_preprocessing(d));
  d.mean = {0.3};
  d.std = {0.4};
  EXPECT_EQ(recorded_preprocessing(d).mean, std::vector<double>{0.3});
}

}  // namespace
}  // namespace fsa::data
