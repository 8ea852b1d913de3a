// CAM overlays and figures, checked against OpenCV and hand computation.
#include "fsa/viz/overlay.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <opencv2/imgproc.hpp>

#include "fsa/viz/figure.h"
#include "test_util.h"

namespace {

using namespace fsa::viz;

cv::Mat float_mat(const torch::Tensor& t) {
  auto c = t.contiguous();
  return cv::Mat(int(c.size(0)), int(c.size(1)), CV_32FC1, c.data_ptr<float>()).clone();
}

/// OpenCV's jet colour (as RGB) of a value quantised to uint8.
cv::Vec3b jet_rgb(uint8_t v) {
  cv::Mat one(1, 1, CV_8UC1, cv::Scalar(v)), bgr;
  cv::applyColorMap(one, bgr, cv::COLORMAP_JET);
  const auto p = bgr.at<cv::Vec3b>(0, 0);
  return {p[2], p[1], p[0]};
}

TEST(Overlay, TwoByTwoComputedByHand) {
  // A 2×2 image and a 2×2 CAM: the CAM needs no resampling, so each pixel is
  // 0.6·image + 0.4·jet(round(255·cam)), rounded.
  auto image = torch::tensor({10, 20, 30, 200, 100, 0, 255, 255, 255, 0, 0, 0}, torch::kUInt8)
                   .view({2, 2, 3});
  auto cam = torch::tensor({0.0f, 0.2f, 0.6f, 1.0f}).view({2, 2});
  auto out = overlay_cam(image, cam, 0.4);
  ASSERT_EQ(out.sizes(), torch::IntArrayRef({2, 2, 3}));
  ASSERT_EQ(out.scalar_type(), torch::kUInt8);
  const uint8_t quantised[4] = {0, 51, 153, 255};  // round(255·v)
  for (int y = 0; y < 2; ++y) {
    for (int x = 0; x < 2; ++x) {
      const auto heat = jet_rgb(quantised[2 * y + x]);
      for (int ch = 0; ch < 3; ++ch) {
        const double expected = std::round(0.6 * image[y][x][ch].item<int>() + 0.4 * heat[ch]);
        EXPECT_EQ(out[y][x][ch].item<int>(), int(expected)) << y << "," << x << "," << ch;
      }
    }
  }
  // Jet runs from blue (0) to red (1).
  const auto lo = jet_rgb(0), hi = jet_rgb(255);
  EXPECT_GT(lo[2], lo[0]);
  EXPECT_GT(hi[0], hi[2]);
  // alpha 0 is the image, alpha 1 the heat map.
  EXPECT_TRUE(torch::equal(overlay_cam(image, cam, 0.0), image));
  EXPECT_TRUE(torch::equal(overlay_cam(image, cam, 1.0), jet(cam)));
}

TEST(Overlay, JetIsOpenCvsColourMapOfEveryLevel) {
  auto levels = torch::arange(256, torch::kFloat32).div(255).view({16, 16});
  auto rgb = jet(levels);
  for (int v = 0; v < 256; ++v) {
    const auto expected = jet_rgb(uint8_t(v));
    for (int ch = 0; ch < 3; ++ch) {
      EXPECT_EQ(rgb[v / 16][v % 16][ch].item<int>(), expected[ch]) << v;
    }
  }
}

TEST(Overlay, UpsamplingMatchesCvResizeLinear) {
  torch::manual_seed(3);
  for (auto [h, w, hh, ww] : std::vector<std::array<int64_t, 4>>{
           {8, 8, 128, 128}, {5, 7, 32, 29}, {2, 2, 4, 4}, {7, 7, 224, 224}}) {
    auto map = torch::rand({h, w});
    auto ours = resize_bilinear(map, hh, ww);
    cv::Mat theirs;
    cv::resize(float_mat(map), theirs, cv::Size(int(ww), int(hh)), 0, 0, cv::INTER_LINEAR);
    ASSERT_EQ(ours.sizes(), torch::IntArrayRef({hh, ww}));
    double worst = 0;
    for (int y = 0; y < hh; ++y) {
      for (int x = 0; x < ww; ++x) {
        worst = std::max(
            worst, std::abs(double(ours[y][x].item<float>()) - double(theirs.at<float>(y, x))));
      }
    }
    EXPECT_LT(worst, 1e-5) << h << "x" << w << " -> " << hh << "x" << ww;
  }
}

TEST(Overlay, SmallCamIsUpsampledToTheImage) {
  // A 2×2 CAM over a 4×4 image: the heat is jet of the cv::resize'd CAM.
  auto image = torch::full({4, 4, 3}, 100, torch::kUInt8);
  auto cam = torch::tensor({0.0f, 1.0f, 0.5f, 0.25f}).view({2, 2});
  cv::Mat up;
  cv::resize(float_mat(cam), up, cv::Size(4, 4), 0, 0, cv::INTER_LINEAR);
  auto out = overlay_cam(image, cam, 0.4);
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) {
      const auto heat = jet_rgb(cv::saturate_cast<uint8_t>(up.at<float>(y, x) * 255.0f));
      for (int ch = 0; ch < 3; ++ch) {
        EXPECT_EQ(out[y][x][ch].item<int>(), int(std::round(60 + 0.4 * heat[ch]))) << y << "," << x;
      }
    }
  }
}

TEST(Overlay, ImagesAndNames) {
  auto grey = torch::arange(6, torch::kUInt8).view({1, 2, 3});
  auto rgb = to_rgb(grey);
  ASSERT_EQ(rgb.sizes(), torch::IntArrayRef({2, 3, 3}));
  EXPECT_EQ(rgb[1][2][0].item<int>(), 5);
  EXPECT_EQ(rgb[1][2][2].item<int>(), 5);
  auto colour = torch::arange(12, torch::kUInt8).view({3, 2, 2});
  EXPECT_EQ(to_rgb(colour)[1][0][2].item<int>(), 10);  // channel 2, row 1, column 0

  auto big = enlarge(rgb, 4);
  ASSERT_EQ(big.sizes(), torch::IntArrayRef({8, 12, 3}));
  EXPECT_EQ(big[7][11][1].item<int>(), 5);
  EXPECT_EQ(big[3][4][1].item<int>(), 1);
  EXPECT_EQ(enlargement_for(32, 32), 4);
  EXPECT_EQ(enlargement_for(28, 28), 5);
  EXPECT_EQ(enlargement_for(224, 224), 1);

  EXPECT_EQ(sanitize_name("T-shirt/top"), "T-shirt_top");
  EXPECT_EQ(sanitize_name("Ankle boot"), "Ankle_boot");
  EXPECT_EQ(sanitize_name(".."), "_..");
  EXPECT_EQ(sanitize_name("oiseau ß"), "oiseau_ß");  // UTF-8 stays, the space does not
  EXPECT_EQ(sanitize_name("猫/犬"), "猫_犬");
  EXPECT_EQ(sanitize_name(std::string(250, 'a')), std::string(100, 'a'));
  const auto cats = sanitize_name(std::string(99, 'a') + "猫猫");  // 99 + 3 + 3 bytes
  EXPECT_EQ(cats, std::string(99, 'a'));                           // not a broken half of 猫
  EXPECT_EQ(sanitize_name(""), "_");

  EXPECT_THROW(overlay_cam(torch::zeros({2, 2}, torch::kUInt8), torch::zeros({2, 2})),
               std::invalid_argument);
  EXPECT_THROW(overlay_cam(torch::zeros({2, 2, 3}), torch::zeros({2, 2})), std::invalid_argument);
  EXPECT_THROW(overlay_cam(torch::zeros({2, 2, 3}, torch::kUInt8), torch::zeros({2, 2}), 1.5),
               std::invalid_argument);
}

TEST(Overlay, PngRoundTrip) {
  fsa::testing::TempDir dir;
  auto img = torch::randint(0, 256, {5, 7, 3}, torch::kUInt8);
  write_png(dir / "a/b/c.png", img);
  EXPECT_TRUE(torch::equal(read_png(dir / "a/b/c.png"), img));
  EXPECT_THROW(read_png(dir / "missing.png"), std::runtime_error);
}

TEST(ContactSheet, DimensionsFollowTheDocumentedLayout) {
  std::vector<SheetCell> cells;
  for (int i = 0; i < 5; ++i) {
    cells.push_back({torch::full({12, 10, 3}, 10 * i, torch::kUInt8),
                     torch::full({12, 10, 3}, 100 + i, torch::kUInt8),
                     {{"a caption that is much too long for the cell", {0, 0, 0}}, {"2", {}}}});
  }
  // 3 columns, 2 rows; a cell is 2·10 + 4 = 24 wide and 12 + 2·16 = 44 high.
  auto sheet = contact_sheet("title", cells, 3);
  EXPECT_EQ(sheet.sizes(), torch::IntArrayRef({28 + 8 + 2 * (44 + 8), 8 + 3 * (24 + 8), 3}));
  // Cell 4 (row 1, column 1): image at (8 + 32, 36 + 52), overlay 14 pixels right of it.
  const int x = 8 + 32, y = 28 + 8 + 52;
  EXPECT_EQ(sheet[y][x][0].item<int>(), 40);
  EXPECT_EQ(sheet[y + 11][x + 9][2].item<int>(), 40);
  EXPECT_EQ(sheet[y][x + 14][1].item<int>(), 104);
  EXPECT_EQ(sheet[y][x + 10][1].item<int>(), 255);  // the gap stays white
  // Fewer cells than columns: one row as wide as the cells.
  cells.resize(2);
  EXPECT_EQ(contact_sheet("t", cells, 4).sizes(), torch::IntArrayRef({28 + 8 + 52, 8 + 2 * 32, 3}));
  EXPECT_THROW(contact_sheet("t", {}, 4), std::invalid_argument);
  cells[1].overlay = torch::zeros({11, 10, 3}, torch::kUInt8);
  EXPECT_THROW(contact_sheet("t", cells, 4), std::invalid_argument);
}

TEST(FusionFigure, PanelsShowMaskAndSources) {
  // 4×4 cells drawn at 16×16: each cell is a 4×4 block.
  auto image = torch::full({16, 16, 3}, 120, torch::kUInt8);
  auto tail_cam = torch::zeros({4, 4});
  tail_cam[0][0] = 1.0;  // class-specific cell (> ts)
  auto other_cam = torch::ones({4, 4});
  other_cam[3][3] = 0.0;  // class-generic cell (< tg)
  auto mask = torch::zeros({4, 4}, torch::kBool);
  mask[0][0] = true;
  mask[1][1] = true;
  auto fused = torch::zeros({2, 4, 4});
  fused[0][0][0] = 3;
  fused[1][3][3] = 1;
  FusionRow row{image, tail_cam, image, other_cam, mask, fused, "tail", "other"};
  auto fig = fusion_figure("fusion", {row, row}, 0.8, 0.2);
  ASSERT_EQ(fig.sizes(), torch::IntArrayRef({28 + 2 * (32 + 16 + 8), 8 + 5 * (16 + 8), 3}));
  auto pixel = [&](int panel, int cy, int cx, int row_i = 1) {
    const int x = 8 + panel * 24 + 4 * cx + 2, y = 28 + row_i * 56 + 32 + 4 * cy + 2;
    return std::array<int, 3>{fig[y][x][0].item<int>(), fig[y][x][1].item<int>(),
                              fig[y][x][2].item<int>()};
  };
  using C = std::array<int, 3>;
  EXPECT_EQ(pixel(2, 0, 0), (C{255, 255, 255}));  // B true
  EXPECT_EQ(pixel(2, 1, 1), (C{255, 255, 255}));
  EXPECT_EQ(pixel(2, 2, 1), (C{0, 0, 0}));  // B false
  EXPECT_EQ(pixel(3, 0, 0), (C{kTailColour[0], kTailColour[1], kTailColour[2]}));
  EXPECT_EQ(pixel(3, 3, 3), (C{kOtherColour[0], kOtherColour[1], kOtherColour[2]}));
  EXPECT_EQ(pixel(3, 1, 1), (C{0, 0, 0}));     // B true but not class-specific: zero
  EXPECT_EQ(pixel(0, 2, 2), (C{36, 36, 36}));  // tail image dimmed outside its region
  // The fused panel: energy 1 at (0,0) is jet's top, zero elsewhere is jet's bottom.
  const auto top = jet_rgb(255), bottom = jet_rgb(0);
  EXPECT_EQ(pixel(4, 0, 0), (C{top[0], top[1], top[2]}));
  EXPECT_EQ(pixel(4, 2, 2), (C{bottom[0], bottom[1], bottom[2]}));
  EXPECT_THROW(fusion_figure("f", {}, 0.8, 0.2), std::invalid_argument);
  row.mask = torch::zeros({3, 4}, torch::kBool);
  EXPECT_THROW(fusion_figure("f", {row}, 0.8, 0.2), std::invalid_argument);
}

TEST(FusionFigure, FeatureEnergyIsTheNormalisedChannelSum) {
  auto fused = torch::tensor({1.0f, 2.0f, 3.0f, 4.0f, 1.0f, 0.0f, 1.0f, 2.0f}).view({2, 2, 2});
  // Channel sums 2, 2, 4, 6 → (s − 2)/4.
  EXPECT_TRUE(
      torch::allclose(feature_energy(fused), torch::tensor({0.0f, 0.0f, 0.5f, 1.0f}).view({2, 2})));
  EXPECT_TRUE(torch::equal(feature_energy(torch::ones({3, 2, 2})), torch::zeros({2, 2})));
}

}  // namespace
