// `fsa run`: the three phases in order, each phase's output feeding the next.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <sstream>

#include "fsa/dist/dist.h"
#include "fsa/io/files.h"
#include "fsa/train/phases.h"
#include "fsa/train/visualize.h"
#include "internal.h"

namespace fs = std::filesystem;

namespace fsa::train {

void validate_pipeline(const io::PipelineConfig& cfg) {
  const auto& d = cfg.phase_i.dataset;
  for (const io::Config* other : {&cfg.phase_ii, &cfg.phase_iii}) {
    if (other->dataset.name != d.name || other->dataset.root != d.root ||
        other->dataset.imbalance_factor != d.imbalance_factor ||
        other->random_seed != cfg.phase_i.random_seed || other->device != cfg.phase_i.device ||
        other->model.name != cfg.phase_i.model.name) {
      throw io::ConfigError(fmt::format(
          "config {}: dataset, random_seed, device and model must be the same for all phases of "
          "a pipeline (set them at the top level, not under phase_ii or phase_iii)",
          cfg.phase_i.source));
    }
  }
  if (cfg.phase_iii.finetune.offline &&
      cfg.phase_ii.feature.cam_layer != cfg.phase_iii.feature.cam_layer) {
    throw io::ConfigError(fmt::format(
        "config {}: offline Phase III reads Phase II's stored feature maps, so "
        "feature.cam_layers must be the same in phase_ii ('{}') and phase_iii ('{}')",
        cfg.phase_i.source, cfg.phase_ii.feature.cam_layer, cfg.phase_iii.feature.cam_layer));
  }
  validate_phase_iii(cfg.phase_iii);
}

void validate_pipeline_data(const io::PipelineConfig& cfg, const Workspace& ws) {
  const auto heads = std::count(ws.data.head.begin(), ws.data.head.end(), true);
  if (heads == ws.data.num_classes() || heads == 0) {
    throw io::ConfigError(fmt::format(
        "config {}: {} of the {} classes are head classes (finetune.head_ratio {}{}), so "
        "Phase III would have {}; change finetune.head_ratio or finetune.head_classes",
        cfg.phase_i.source, heads, ws.data.num_classes(), cfg.phase_i.finetune.head_ratio,
        cfg.phase_i.finetune.head_classes.empty() ? "" : ", finetune.head_classes given",
        heads == 0 ? "no head class to draw confusing classes from" : "no tail class to augment"));
  }
}

std::string run_pipeline(const io::PipelineConfig& cfg_in, Workspace& ws,
                         const std::string& out_dir) {
  validate_pipeline(cfg_in);
  io::PipelineConfig cfg = cfg_in;
  cfg.phase_ii.feature.store = cfg.phase_ii.feature.store || cfg.phase_iii.finetune.offline;
  validate_pipeline_data(cfg, ws);
  fs::create_directories(out_dir);
  const auto t0 = std::chrono::steady_clock::now();

  const auto dir_i = (fs::path(out_dir) / "phase_i").string();
  const auto dir_ii = (fs::path(out_dir) / "phase_ii").string();
  const auto dir_iii = (fs::path(out_dir) / "phase_iii").string();
  spdlog::info("== Phase I: training {} on the long-tailed set ({} epochs) ==",
               cfg.phase_i.model.name, cfg.phase_i.train.num_epoch);
  const auto phase_i = run_phase_i(cfg.phase_i, ws, dir_i);
  spdlog::info("== Phase II: confusing classes and class activation maps ==");
  cfg.phase_ii.checkpoint.load_checkpoint = phase_i.checkpoint;
  run_phase_ii(cfg.phase_ii, ws, phase_i.checkpoint, dir_ii);
  spdlog::info("== Phase III: fine-tuning with feature-space augmentation ({} epochs) ==",
               cfg.phase_iii.train.num_epoch);
  cfg.phase_iii.checkpoint.load_checkpoint = phase_i.checkpoint;
  // A top-level checkpoint.resume is Phase I's; Phase III resumes only from
  // its own section's.
  if (cfg.phase_iii.checkpoint.resume == cfg.phase_i.checkpoint.resume) {
    cfg.phase_iii.checkpoint.resume.clear();
  }
  cfg.phase_iii.finetune.analysis = (fs::path(dir_ii) / "analysis.pt").string();
  const auto phase_iii = run_phase_iii(cfg.phase_iii, ws, phase_i.checkpoint,
                                       cfg.phase_iii.finetune.analysis, dir_iii);

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json metrics{{"phase_i", phase_i.metrics},
                         {"phase_iii", phase_iii.metrics},
                         {"class_counts", ws.data.class_counts},
                         {"class_names", ws.data.train.class_names},
                         {"head_classes", std::vector<bool>(ws.data.head)},
                         {"dataset", cfg.phase_i.dataset.name},
                         {"imbalance_factor", cfg.phase_i.dataset.imbalance_factor},
                         {"model", cfg.phase_i.model.name},
                         {"seconds", secs}};
  detail::write_json((fs::path(out_dir) / "metrics.json").string(), metrics);
  const auto table = format_comparison(phase_i.report, phase_iii.report, ws.data);
  if (!dist::is_main()) return table;  // rank 0 writes the run's files
  std::string resolved = "# The resolved configuration of each phase\n";
  for (const auto& [name, phase] : {std::pair{"phase_i", &cfg.phase_i},
                                    std::pair{"phase_ii", &cfg.phase_ii},
                                    std::pair{"phase_iii", &cfg.phase_iii}}) {
    resolved += std::string(name) + ":\n";
    std::istringstream lines(io::to_yaml(*phase));
    for (std::string line; std::getline(lines, line);) resolved += "  " + line + "\n";
  }
  io::write_file_atomic((fs::path(out_dir) / "config.yaml").string(), resolved);
  try {  // CAM overlays of the tail classes; pictures are a bonus, never fatal
    VisualizeOptions viz;
    viz.checkpoint = phase_iii.checkpoint;
    viz.out_dir = out_dir;
    run_visualize(cfg.phase_iii, ws, viz);
  } catch (const std::exception& e) {
    spdlog::warn("overlays not written: {}", e.what());
  }
  detail::write_report_safely(out_dir);  // after the overlays: it shows their contact sheets
  spdlog::info("finished in {}; results in {}\n{}", detail::format_duration(secs), out_dir, table);
  return table;
}

}  // namespace fsa::train
