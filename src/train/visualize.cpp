// `fsa visualize`: CAM overlays with contact sheets, and fusion figures.
#include "fsa/train/visualize.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "fsa/augment/fusion.h"
#include "fsa/cam/cam.h"
#include "fsa/data/inputs.h"
#include "fsa/data/transforms.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/fsa_batch.h"
#ifndef FSA_NO_OPENCV
#include "fsa/viz/figure.h"
#include "fsa/viz/overlay.h"
#endif
#include "internal.h"

namespace fs = std::filesystem;

namespace fsa::train {
namespace {

constexpr uint64_t kFusionTag = 0x56;  // generator stream of the fusion figures' masks
constexpr int64_t kFusionSide = 160;   // fusion panels: wide enough for their labels
constexpr std::array<uint8_t, 3> kRight{0, 128, 0}, kWrong{200, 0, 0}, kBlack{0, 0, 0};

std::vector<int64_t> chosen_classes(const VisualizeOptions& opts, const Workspace& ws) {
  if (!opts.classes.empty()) return opts.classes;
  std::vector<int64_t> tail;
  for (int64_t c = 0; c < ws.data.num_classes(); ++c) {
    if (!ws.data.head[size_t(c)]) tail.push_back(c);
  }
  return tail;
}

#ifndef FSA_NO_OPENCV  // drawing needs OpenCV; without it run_visualize says so
/// What the network makes of some images: feature maps, CAMs for the given
/// classes, predictions and their softmax probabilities, all on the CPU.
struct Look {
  torch::Tensor maps;   // float [N, K, h, w]
  torch::Tensor cams;   // float [N, h, w]
  torch::Tensor preds;  // int64 [N]
  torch::Tensor probs;  // float [N]
};

Look look(models::Backbone& model, const Workspace& ws, const torch::Tensor& images,
          const torch::Tensor& classes, const std::string& layer, int64_t batch) {
  std::vector<torch::Tensor> maps, cams, preds, probs;
  for (int64_t s = 0; s < images.size(0); s += batch) {
    const auto len = std::min(batch, images.size(0) - s);
    auto y = classes.narrow(0, s, len).to(ws.device);
    torch::Tensor a, p;
    {
      torch::NoGradGuard no_grad;
      a = model.features(
          data::normalize(images.narrow(0, s, len).to(ws.device), ws.data.mean, ws.data.std),
          layer);
      p = torch::softmax(model.head(a, layer), /*dim=*/1);
    }
    cams.push_back(cam::class_activation_maps(model, a, y, layer).cpu());
    auto best = p.max(/*dim=*/1);
    probs.push_back(std::get<0>(best).cpu());
    preds.push_back(std::get<1>(best).cpu());
    maps.push_back(a.cpu());
  }
  return {torch::cat(maps), torch::cat(cams), torch::cat(preds), torch::cat(probs)};
}

std::string class_label(const Workspace& ws, int64_t c) {
  return fmt::format("{} {}", c, ws.data.train.class_names[size_t(c)]);
}

std::string class_folder(const Workspace& ws, int64_t c) {
  return fmt::format("{}_{}", c, viz::sanitize_name(ws.data.train.class_names[size_t(c)]));
}

/// "phase_iii/checkpoints/last.pt (phase_iii, epoch 10)": which network a picture shows.
std::string describe(const std::string& path, const CheckpointInfo& info) {
  const fs::path p(path);
  auto shown = p.filename();
  if (p.parent_path().filename() == "checkpoints") {
    shown = p.parent_path().parent_path().filename() / "checkpoints" / p.filename();
  }
  return fmt::format("{} ({}, epoch {})", shown.string(), info.phase.empty() ? "?" : info.phase,
                     info.epoch);
}

void draw_overlays(const io::Config& cfg, const Workspace& ws, models::Backbone& model,
                   const VisualizeOptions& opts, const std::string& source,
                   VisualizeResult& result) {
  const auto& set = opts.split == "train" ? ws.data.train : ws.data.test;
  const auto& layer = cfg.feature.cam_layer;
  const auto labels = set.labels.cpu();
  for (const auto c : chosen_classes(opts, ws)) {
    auto index = labels.eq(c).nonzero().flatten();
    index = index.narrow(0, 0, std::min(opts.per_class, index.size(0)));
    if (index.size(0) == 0) {
      spdlog::warn("visualize: class {} has no {} images", class_label(ws, c), opts.split);
      continue;
    }
    const auto images = data::picture_pixels(ws.data, set, index);
    const auto factor = viz::enlargement_for(images.size(2), images.size(3), opts.min_side);
    const auto seen =
        look(model, ws, images, labels.index_select(0, index), layer, cfg.test.batch_size);
    const auto dir = fs::path(opts.out_dir) / "overlays" / class_folder(ws, c);
    std::vector<viz::SheetCell> cells;
    for (int64_t i = 0; i < index.size(0); ++i) {
      auto rgb = viz::enlarge(viz::to_rgb(images[i]), factor);
      auto over = viz::overlay_cam(rgb, seen.cams[i], opts.alpha);
      const auto path = (dir / fmt::format("{}.png", index[i].item<int64_t>())).string();
      viz::write_png(path, over);
      result.overlays.push_back(path);
      const auto pred = seen.preds[i].item<int64_t>();
      cells.push_back(
          {rgb,
           over,
           {{fmt::format("#{} true: {}", index[i].item<int64_t>(), class_label(ws, c)), kBlack},
            {fmt::format("pred: {} {:.0f}%", class_label(ws, pred),
                         100 * seen.probs[i].item<double>()),
             pred == c ? kRight : kWrong}}});
    }
    const auto title = fmt::format("{}, {} split: image | CAM at {} for the true class; {}",
                                   class_label(ws, c), opts.split, layer, source);
    const auto sheet =
        (fs::path(opts.out_dir) / ("contact_" + class_folder(ws, c) + ".png")).string();
    viz::write_png(sheet, viz::contact_sheet(title, cells, opts.columns));
    result.contact_sheets.push_back(sheet);
  }
}

void draw_fusion(const io::Config& cfg, const Workspace& ws, models::Backbone& model,
                 const Analysis& analysis, const VisualizeOptions& opts, VisualizeResult& result) {
  const auto& ft = cfg.finetune;
  const auto& set = ws.data.train;
  const auto& layer = cfg.feature.cam_layer;
  const auto labels = set.labels.cpu();
  std::vector<std::vector<int64_t>> by_class(size_t(ws.data.num_classes()));
  for (int64_t i = 0; i < labels.size(0); ++i) {
    by_class[size_t(labels[i].item<int64_t>())].push_back(i);
  }
  std::mt19937_64 rng(ws.seed ^ 0x9E3779B97F4A7C15ULL);
  auto draw = [&](int64_t c) {
    const auto& pool = by_class[size_t(c)];
    return pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)];
  };
  std::vector<int64_t> tails;
  for (auto t : chosen_classes(opts, ws)) {
    if (!by_class[size_t(t)].empty()) tails.push_back(t);
  }
  if (tails.empty()) throw io::ConfigError("visualize --fusion: no tail class has training images");
  std::vector<std::vector<int64_t>> confusing(ws.data.head.size());
  for (auto t : tails) {
    confusing[size_t(t)] = confusing_classes(analysis, t, ft.Nf);
    if (confusing[size_t(t)].empty()) {
      throw CheckpointError(fmt::format("Phase II analysis '{}' lists no confusing class for "
                                        "class {}", opts.analysis, class_label(ws, t)));
    }
  }
  // The figures show Phase III's own draws and batch (train/fsa_batch.h), on
  // unaugmented images so that the pictures match the maps.
  auto head = ws.data.head;
  for (size_t c = 0; c < head.size(); ++c) {
    if (!head[c] && confusing[c].empty()) head[c] = true;  // classes not drawn here
  }
  std::vector<int64_t> label_list(labels.data_ptr<int64_t>(),
                                  labels.data_ptr<int64_t>() + labels.numel());
  GroupSampler sampler(label_list, head, confusing, ft.Na);
  FsaBatchBuilder builder(model, ws.data, ws.device, layer, ft, /*bf16_mixed=*/false,
                          /*store=*/nullptr);
  model.eval();
  for (int64_t k = 0; k < opts.fusion_images; ++k) {
    const auto t = tails[size_t(k) % tails.size()];
    const auto drawn = sampler.draw({draw(t)}, rng);
    const auto batch =
        builder.build(drawn, detail::epoch_generator(ws.seed, kFusionTag, k), /*augment=*/false);
    std::vector<int64_t> picked{drawn.tail[0].item<int64_t>()};
    for (int64_t a = 0; a < ft.Na; ++a) picked.push_back(drawn.other[a].item<int64_t>());
    const auto images = data::picture_pixels(ws.data, set, torch::tensor(picked, torch::kInt64));
    const auto factor = viz::enlargement_for(images.size(2), images.size(3),
                                             std::max(opts.min_side, kFusionSide));
    const auto cams = torch::cat({batch.tail_cams, batch.other_cams}).cpu();
    const auto fused = augment::FusedMaps{batch.fused.maps.cpu(), batch.fused.labels.cpu(),
                                          batch.fused.masks.cpu()};
    const auto tail_rgb = viz::enlarge(viz::to_rgb(images[0]), factor);
    std::vector<viz::FusionRow> rows;
    for (int64_t a = 0; a < ft.Na; ++a) {
      const auto o = picked[size_t(a) + 1];
      rows.push_back({tail_rgb, cams[0], viz::enlarge(viz::to_rgb(images[a + 1]), factor),
                      cams[a + 1], fused.masks[a], fused.maps[a], "tail " + class_label(ws, t),
                      "conf. " + class_label(ws, labels[o].item<int64_t>()),
                      fmt::format("#{}", picked[0]), fmt::format("#{}", o)});
    }
    const auto title = fmt::format("Fused maps of train image #{} ({}), labelled {}; CAM at {}",
                                   picked[0], class_label(ws, t), t, layer);
    const auto path = (fs::path(opts.out_dir) / fmt::format("fusion_{}.png", k)).string();
    viz::write_png(path, viz::fusion_figure(title, rows, ft.ts, ft.tg));
    result.fusion.push_back(path);
  }
}
#endif  // FSA_NO_OPENCV

}  // namespace

void validate_visualize(const VisualizeOptions& opts, const Workspace& ws) {
  const auto num_classes = ws.data.num_classes();
  std::vector<bool> seen(size_t(std::max<int64_t>(num_classes, 0)), false);
  for (const auto c : opts.classes) {
    if (c >= 0 && c < num_classes && seen[size_t(c)]) {
      throw io::ConfigError(fmt::format("--classes: class {} is listed twice", c));
    }
    if (c >= 0 && c < num_classes) seen[size_t(c)] = true;
    if (c < 0 || c >= num_classes) {
      throw io::ConfigError(
          fmt::format("--classes: class {} is out of range; the dataset has {} "
                      "classes (0..{})",
                      c, num_classes, num_classes - 1));
    }
    if (opts.fusion && ws.data.head[size_t(c)]) {
      throw io::ConfigError(
          fmt::format("--classes: class {} is a head class; fusion figures are "
                      "drawn for tail classes",
                      class_label(ws, c)));
    }
  }
  auto at_least_one = [](int64_t v, const char* name) {
    if (v < 1) throw io::ConfigError(fmt::format("{}: expected at least 1, got {}", name, v));
  };
  at_least_one(opts.per_class, "--per-class");
  at_least_one(opts.columns, "contact sheet columns");
  at_least_one(opts.fusion_images, "--fusion-images");
  at_least_one(opts.min_side, "minimum picture side");
  if (!(opts.alpha >= 0 && opts.alpha <= 1)) {
    throw io::ConfigError(fmt::format("heat map opacity {} is outside [0, 1]", opts.alpha));
  }
  if (opts.split != "train" && opts.split != "test") {
    throw io::ConfigError(fmt::format("--split '{}': expected train or test", opts.split));
  }
  if (opts.checkpoint.empty()) throw io::ConfigError("--checkpoint is required");
  if (!fs::exists(opts.checkpoint)) {
    throw io::ConfigError(fmt::format("--checkpoint '{}' does not exist", opts.checkpoint));
  }
  if (opts.fusion && opts.analysis.empty()) {
    throw io::ConfigError("--fusion needs the Phase II analysis (--analysis analysis.pt)");
  }
  if (!opts.fusion && !opts.analysis.empty()) {
    throw io::ConfigError("--analysis is used only with --fusion");
  }
  if (opts.fusion && chosen_classes(opts, ws).empty()) {
    throw io::ConfigError("visualize --fusion: the dataset has no tail classes");
  }
}

VisualizeResult run_visualize(const io::Config& cfg, Workspace& ws, const VisualizeOptions& opts) {
  validate_visualize(opts, ws);
#ifdef FSA_NO_OPENCV
  throw std::runtime_error(
      "fsa visualize: this build has no OpenCV (built with FSA_WITH_OPENCV=OFF) to draw images");
#else
  auto model = detail::build_model(cfg, ws);
  const auto source = describe(opts.checkpoint, load_checkpoint(opts.checkpoint, *model, nullptr));
  model->eval();
  Analysis analysis;
  if (opts.fusion) analysis = load_matching_analysis(opts.analysis, ws);
  fs::create_directories(opts.out_dir);
  VisualizeResult result;
  if (opts.fusion) {
    draw_fusion(cfg, ws, *model, analysis, opts, result);
    spdlog::info("visualize: {} fusion figures in {}", result.fusion.size(), opts.out_dir);
  } else {
    draw_overlays(cfg, ws, *model, opts, source, result);
    spdlog::info("visualize: {} overlays and {} contact sheets in {}", result.overlays.size(),
                 result.contact_sheets.size(), opts.out_dir);
  }
  return result;
#endif
}

}  // namespace fsa::train
