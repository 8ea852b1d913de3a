#include "fsa/viz/figure.h"

#include <fmt/format.h>

#include <opencv2/imgproc.hpp>
#include <stdexcept>

#include "fsa/cam/cam.h"
#include "fsa/viz/overlay.h"
#include "mat.h"

namespace fsa::viz {
namespace {

constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr double kFontScale = 0.4;
constexpr double kTitleScale = 0.5;

cv::Scalar colour(const std::array<uint8_t, 3>& rgb) { return cv::Scalar(rgb[0], rgb[1], rgb[2]); }

/// The text, cut and ended with ".." until it fits in max_width pixels.
std::string fit_text(const std::string& text, double scale, int max_width) {
  int baseline = 0;
  auto width = [&](const std::string& s) {
    return cv::getTextSize(s, kFont, scale, 1, &baseline).width;
  };
  if (width(text) <= max_width) return text;
  std::string cut = text;
  while (!cut.empty() && width(cut + "..") > max_width) cut.pop_back();
  return cut.empty() ? std::string() : cut + "..";
}

/// Draws one line of text with its baseline `kLineHeight - 4` below `top`.
void put_line(cv::Mat& canvas, const TextLine& line, int x, int top, int max_width,
              double scale = kFontScale) {
  const auto text = fit_text(line.text, scale, max_width);
  if (text.empty()) return;
  cv::putText(canvas, text, cv::Point(x, top + int(kLineHeight) - 4), kFont, scale,
              colour(line.rgb), 1, cv::LINE_AA);
}

void put_title(cv::Mat& canvas, const std::string& title) {
  const int baseline_y = int(kTitleHeight) - 9;
  const auto text = fit_text(title, kTitleScale, canvas.cols - 2 * int(kMargin));
  cv::putText(canvas, text, cv::Point(int(kMargin), baseline_y), kFont, kTitleScale,
              cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
}

void paste(cv::Mat& canvas, const torch::Tensor& rgb, int x, int y) {
  auto m = detail::to_mat(rgb);
  m.copyTo(canvas(cv::Rect(x, y, m.cols, m.rows)));
}

/// A bool cell mask [h, w] enlarged to height×width by nearest neighbour, as 0/255.
cv::Mat upsample_mask(const torch::Tensor& mask, int height, int width) {
  auto m = mask.to(torch::kCPU, torch::kUInt8).mul(255).contiguous();
  cv::Mat small(int(m.size(0)), int(m.size(1)), CV_8UC1, m.data_ptr<uint8_t>());
  cv::Mat big;
  cv::resize(small, big, cv::Size(width, height), 0, 0, cv::INTER_NEAREST);
  return big;
}

/// x dimmed outside the region, the region's border drawn in `rgb`.
cv::Mat region_panel(const torch::Tensor& image, const torch::Tensor& region,
                     const std::array<uint8_t, 3>& rgb) {
  auto img = detail::to_mat(image);
  auto mask = upsample_mask(region, img.rows, img.cols);
  cv::Mat out;
  img.convertTo(out, -1, 0.3);
  img.copyTo(out, mask);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(mask, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  cv::drawContours(out, contours, -1, colour(rgb), 1, cv::LINE_8);
  return out;
}

/// A picture of cells coloured by a label map: int64 [h, w] → palette[label].
cv::Mat label_panel(const torch::Tensor& labels, const std::vector<std::array<uint8_t, 3>>& palette,
                    int height, int width) {
  auto l = labels.to(torch::kCPU, torch::kInt64).contiguous();
  cv::Mat small(int(l.size(0)), int(l.size(1)), CV_8UC3);
  auto acc = l.accessor<int64_t, 2>();
  for (int y = 0; y < small.rows; ++y) {
    for (int x = 0; x < small.cols; ++x) {
      const auto& c = palette.at(size_t(acc[y][x]));
      small.at<cv::Vec3b>(y, x) = cv::Vec3b(c[0], c[1], c[2]);
    }
  }
  cv::Mat big;
  cv::resize(small, big, cv::Size(width, height), 0, 0, cv::INTER_NEAREST);
  return big;
}

std::string with_note(const std::string& note, const std::string& text) {
  return note.empty() ? text : note + ", " + text;
}

cv::Mat energy_panel(const torch::Tensor& fused, int height, int width) {
  auto m = detail::to_mat(jet(feature_energy(fused)));
  cv::Mat big;
  cv::resize(m, big, cv::Size(width, height), 0, 0, cv::INTER_NEAREST);
  return big;
}

}  // namespace

torch::Tensor contact_sheet(const std::string& title, const std::vector<SheetCell>& cells,
                            int64_t columns) {
  if (cells.empty()) throw std::invalid_argument("contact_sheet: no cells");
  if (columns < 1) throw std::invalid_argument(fmt::format("contact_sheet: {} columns", columns));
  detail::check_rgb(cells[0].image, "contact_sheet");
  const int64_t h = cells[0].image.size(0), w = cells[0].image.size(1);
  size_t lines = 0;
  for (const auto& c : cells) {
    detail::check_rgb(c.image, "contact_sheet");
    detail::check_rgb(c.overlay, "contact_sheet");
    if (c.image.size(0) != h || c.image.size(1) != w || c.overlay.sizes() != c.image.sizes()) {
      throw std::invalid_argument(
          fmt::format("contact_sheet: every image and overlay must be {}x{}", h, w));
    }
    lines = std::max(lines, c.caption.size());
  }
  const int64_t n = int64_t(cells.size()), cols = std::min(columns, n),
                rows = (n + cols - 1) / cols;
  const int64_t cell_w = 2 * w + kGap, cell_h = h + int64_t(lines) * kLineHeight;
  const int64_t width = kMargin + cols * (cell_w + kMargin);
  const int64_t height = kTitleHeight + kMargin + rows * (cell_h + kMargin);
  cv::Mat sheet(int(height), int(width), CV_8UC3, cv::Scalar(255, 255, 255));
  put_title(sheet, title);
  for (int64_t i = 0; i < n; ++i) {
    const int x = int(kMargin + (i % cols) * (cell_w + kMargin));
    const int y = int(kTitleHeight + kMargin + (i / cols) * (cell_h + kMargin));
    paste(sheet, cells[size_t(i)].image, x, y);
    paste(sheet, cells[size_t(i)].overlay, x + int(w + kGap), y);
    for (size_t l = 0; l < cells[size_t(i)].caption.size(); ++l) {
      put_line(sheet, cells[size_t(i)].caption[l], x, y + int(h + int64_t(l) * kLineHeight),
               int(cell_w));
    }
  }
  return detail::to_tensor(sheet);
}

torch::Tensor feature_energy(const torch::Tensor& fused) {
  if (fused.dim() != 3) {
    throw std::invalid_argument(fmt::format("feature_energy: expected a map [K, h, w], got [{}]",
                                            fmt::join(fused.sizes(), ", ")));
  }
  return cam::normalize_maps(fused.to(torch::kCPU, torch::kFloat32).sum(0).unsqueeze(0))[0];
}

torch::Tensor fusion_figure(const std::string& title, const std::vector<FusionRow>& rows, double ts,
                            double tg) {
  if (rows.empty()) throw std::invalid_argument("fusion_figure: no rows");
  detail::check_rgb(rows[0].tail_image, "fusion_figure");
  const int64_t h = rows[0].tail_image.size(0), w = rows[0].tail_image.size(1);
  constexpr int64_t kPanels = 5;
  const int64_t width = kMargin + kPanels * (w + kMargin);
  const int64_t row_h = 2 * kLineHeight + h + kMargin;
  const int64_t height = kTitleHeight + int64_t(rows.size()) * row_h;
  cv::Mat fig(int(height), int(width), CV_8UC3, cv::Scalar(255, 255, 255));
  put_title(fig, title);
  const std::array<uint8_t, 3> black{0, 0, 0}, grey{90, 90, 90};
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& row = rows[r];
    detail::check_rgb(row.tail_image, "fusion_figure");
    detail::check_rgb(row.other_image, "fusion_figure");
    const auto cell = row.mask.sizes();
    if (row.tail_image.size(0) != h || row.tail_image.size(1) != w ||
        row.other_image.sizes() != row.tail_image.sizes() || row.mask.dim() != 2 ||
        row.tail_cam.sizes() != cell || row.other_cam.sizes() != cell || row.fused.dim() != 3 ||
        row.fused.sizes().slice(1) != cell) {
      throw std::invalid_argument(fmt::format(
          "fusion_figure: row {}: images must be {}x{} and CAMs, mask and fused map share one "
          "h×w",
          r, h, w));
    }
    auto specific = row.tail_cam.to(torch::kCPU) > ts;
    auto generic = row.other_cam.to(torch::kCPU) < tg;
    auto b = row.mask.to(torch::kCPU, torch::kBool);
    // 0: zero, 1: from the tail's class-specific part, 2: from the other's class-generic part.
    auto source = (b & specific).to(torch::kInt64) + 2 * (~b & generic).to(torch::kInt64);
    const std::vector<cv::Mat> panels{
        region_panel(row.tail_image, specific, kTailColour),
        region_panel(row.other_image, generic, kOtherColour),
        label_panel(b.to(torch::kInt64), {{0, 0, 0}, {255, 255, 255}}, int(h), int(w)),
        label_panel(source, {{0, 0, 0}, kTailColour, kOtherColour}, int(h), int(w)),
        energy_panel(row.fused, int(h), int(w))};
    const std::vector<std::array<TextLine, 2>> labels{
        {TextLine{row.tail_name, black},
         TextLine{with_note(row.tail_note, fmt::format("CAM > {:g}", ts)), kTailColour}},
        {TextLine{row.other_name, black},
         TextLine{with_note(row.other_note, fmt::format("CAM < {:g}", tg)), kOtherColour}},
        {TextLine{"mask B", black}, TextLine{"white: tail part", grey}},
        {TextLine{"from tail (green)", kTailColour}, TextLine{"from conf. (orange)", kOtherColour}},
        {TextLine{"fused map", black}, TextLine{"sum over channels", grey}}};
    const int top = int(kTitleHeight + int64_t(r) * row_h);
    for (int64_t p = 0; p < kPanels; ++p) {
      const int x = int(kMargin + p * (w + kMargin));
      put_line(fig, labels[size_t(p)][0], x, top, int(w));
      put_line(fig, labels[size_t(p)][1], x, top + int(kLineHeight), int(w));
      panels[size_t(p)].copyTo(fig(cv::Rect(x, top + 2 * int(kLineHeight), int(w), int(h))));
    }
  }
  return detail::to_tensor(fig);
}

}  // namespace fsa::viz
