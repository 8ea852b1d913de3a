// Figures assembled from pictures: a contact sheet of images beside their CAM
// overlays with captions, and the picture of how fused feature maps are
// composed (METHOD.md, Phase III step 2). Pictures are RGB uint8 tensors
// [H, W, 3] on the CPU, as in overlay.h; text is drawn with cv::putText.
#pragma once

#include <torch/types.h>

#include <array>
#include <string>
#include <vector>

namespace fsa::viz {

/// Layout constants, in pixels, shared by both figures.
constexpr int64_t kMargin = 8;        ///< around the figure and between cells / rows / panels
constexpr int64_t kGap = 4;           ///< between an image and its overlay inside a cell
constexpr int64_t kLineHeight = 16;   ///< one caption or label line
constexpr int64_t kTitleHeight = 28;  ///< the title band at the top

/// One line of text and its colour (RGB).
struct TextLine {
  std::string text;
  std::array<uint8_t, 3> rgb{0, 0, 0};
};

/// One cell of a contact sheet: an image, its overlay beside it (same size),
/// and caption lines under the pair.
struct SheetCell {
  torch::Tensor image;    ///< uint8 [H, W, 3]
  torch::Tensor overlay;  ///< uint8 [H, W, 3]
  std::vector<TextLine> caption;
};

/// A grid of cells under a title, on white. With n cells, c = min(columns, n)
/// columns, r = ceil(n / c) rows and L = the most caption lines of any cell:
///   cell   = (2·W + kGap) wide, (H + L·kLineHeight) high
///   width  = kMargin + c·(cell width + kMargin)
///   height = kTitleHeight + kMargin + r·(cell height + kMargin)
/// Text too wide for its cell (or the title for the sheet) is cut and ends in "..".
/// Returns uint8 [height, width, 3]. Throws std::invalid_argument if there are
/// no cells, columns < 1, or the images are not all of one size.
torch::Tensor contact_sheet(const std::string& title, const std::vector<SheetCell>& cells,
                            int64_t columns);

/// One fused feature map and what it was made from (augment::fuse_with_masks).
struct FusionRow {
  torch::Tensor tail_image;   ///< uint8 [H, W, 3]: the tail image x_t
  torch::Tensor tail_cam;     ///< float [h, w]: M_t, its CAM for its class
  torch::Tensor other_image;  ///< uint8 [H, W, 3]: the confusing-class image x_c
  torch::Tensor other_cam;    ///< float [h, w]: M_c, its CAM for its class
  torch::Tensor mask;         ///< bool [h, w]: B, true where the tail's part is kept
  torch::Tensor fused;        ///< float [K, h, w]: B·F_s + (1 − B)·F_g
  std::string tail_name;      ///< first label line of the tail panel, e.g. "tail 9 Ankle boot"
  std::string other_name;     ///< of the confusing panel, e.g. "conf. 4 Coat"
  std::string tail_note;      ///< ahead of "CAM > ts" on the second line, e.g. "#14680" (or "")
  std::string other_note;     ///< ahead of "CAM < tg" on the second line
};

/// The colours of the two sources in the fusion figure (RGB).
constexpr std::array<uint8_t, 3> kTailColour{46, 204, 64};    ///< class-specific part of x_t
constexpr std::array<uint8_t, 3> kOtherColour{255, 133, 27};  ///< class-generic part of x_c

/// Channel-summed fused map, min–max normalised to [0, 1] (all zeros if flat):
/// fused float [K, h, w] → float [h, w].
torch::Tensor feature_energy(const torch::Tensor& fused);

/// The fusion figure: one row per fused map, five panels of H×W each, a
/// two-line label band above each panel:
///   1. x_t, dimmed outside its class-specific region [M_t > ts], region outlined (kTailColour);
///   2. x_c, dimmed outside its class-generic region [M_c < tg], outlined (kOtherColour);
///   3. B: white where the tail's part is kept, black elsewhere;
///   4. where each cell of the fused map comes from: kTailColour (B ∧ M_t > ts),
///      kOtherColour (¬B ∧ M_c < tg), black (zero);
///   5. feature_energy(fused) in jet colours.
/// Masks and maps are shown at feature-map resolution (nearest-neighbour
/// blocks), since fusion acts on whole cells. With R rows:
///   width  = kMargin + 5·(W + kMargin)
///   height = kTitleHeight + R·(2·kLineHeight + H + kMargin)
/// Returns uint8 [height, width, 3]. Throws std::invalid_argument on no rows
/// or inconsistent shapes.
torch::Tensor fusion_figure(const std::string& title, const std::vector<FusionRow>& rows, double ts,
                            double tg);

}  // namespace fsa::viz
