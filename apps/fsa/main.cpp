// fsa: feature space augmentation for long-tailed data, from the command line.
// Parses arguments, builds the typed config and calls one library function
// per subcommand; every error becomes one message and a non-zero exit.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <filesystem>
#include <functional>
#include <iostream>
#include <set>

#include "fsa/bench/bench.h"
#include "fsa/data/image_set.h"
#include "fsa/dist/dist.h"
#include "fsa/io/config.h"
#include "fsa/io/files.h"
#include "fsa/io/npy.h"
#include "fsa/io/table.h"
#include "fsa/io/torch_file.h"
#include "fsa/models/backbone.h"
#include "fsa/models/summary.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/decouple.h"
#include "fsa/train/engine.h"
#include "fsa/train/phases.h"
#include "fsa/train/predict.h"
#include "fsa/train/runtime.h"
#include "fsa/train/visualize.h"
#include "quickstart_config.h"

namespace fs = std::filesystem;

namespace {

struct CommonOptions {
  std::string config;
  std::string out;
  std::string device;
  std::vector<std::string> overrides;
  bool quiet = false;
  bool overwrite = false;  ///< --overwrite: replace an earlier run's outputs in --out
};

/// `fsa bench`: no config file; the measurement's own options.
struct BenchCommandOptions {
  fsa::bench::BenchOptions bench;
  std::string json;
  bool no_layer2 = false, no_channels_last = false, no_bf16 = false, no_jpeg = false,
       no_losses = false;
};

void add_bench_options(CLI::App* cmd, BenchCommandOptions& o) {
  auto& b = o.bench;
  cmd->add_option("--device", b.device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--model", b.model, "network (resnet20/32/44/56/110)")->capture_default_str();
  cmd->add_option("--batch", b.batch, "Phase I and Phase III batch")->capture_default_str();
  cmd->add_option("--test-batch", b.test_batch, "evaluation and Phase II batch")
      ->capture_default_str();
  cmd->add_option("--iters", b.iters, "timed iterations per figure (medians)")
      ->capture_default_str();
  cmd->add_option("--warmup", b.warmup, "untimed iterations first")->capture_default_str();
  cmd->add_option("--threads", b.threads, "intra-op threads (0: all hardware threads)")
      ->capture_default_str();
  cmd->add_option("--cam-layer", b.cam_layer, "CAM layer of Phase II and III")
      ->capture_default_str();
  cmd->add_option("--per-image", b.per_image_count,
                  "images per iteration of the per-image Phase II baseline")
      ->capture_default_str();
  cmd->add_option("--images", b.num_images, "synthetic 32x32 training images in memory")
      ->capture_default_str();
  cmd->add_option("--only", b.sections,
                  "run only these sections: phase_i, eval, phase_ii, phase_iii, data, floor")
      ->delimiter(',');
  cmd->add_flag("--no-layer2", o.no_layer2, "skip Phase II at the stage before the CAM layer");
  cmd->add_flag("--no-channels-last", o.no_channels_last, "skip the channels-last training step");
  cmd->add_flag("--no-bf16", o.no_bf16, "skip the bf16-mixed training step");
  cmd->add_flag("--no-jpeg", o.no_jpeg, "skip JPEG decoding");
  cmd->add_flag("--no-losses", o.no_losses, "skip the long-tail losses' training steps");
  cmd->add_option("--json", o.json, "write every figure to this JSON file");
}

void add_common(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--config", o.config, "YAML config (a phase file or a pipeline file)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", o.out, "output folder (run folder)");
  cmd->add_option("--device", o.device, "cpu, cuda or cuda:N (overrides the config)");
  cmd->add_option("--set", o.overrides, "override a config key: --set train.num_epoch=2")
      ->type_name("KEY=VALUE");
  cmd->add_flag("--quiet", o.quiet, "no progress bar or progress lines");
}

/// The commands that write a run folder (all but visualize, which adds figures).
void add_run_folder(CLI::App* cmd, CommonOptions& o) {
  add_common(cmd, o);
  cmd->add_flag("--overwrite", o.overwrite,
                "remove an earlier run's outputs from --out first (without it, such a folder "
                "is refused unless the command resumes the run in it)");
}

/// The document the options describe: the file (or the embedded quickstart),
/// the --device and --set overrides applied.
YAML::Node load_document(const CommonOptions& o, std::string* source,
                         YAML::Node* as_written = nullptr) {
  YAML::Node doc;
  if (o.config.empty()) {
    doc = YAML::Load(fsa::app::kQuickstartYaml);
    *source = "configs/quickstart.yaml (embedded)";
  } else {
    doc = fsa::io::load_yaml_file(o.config);
    *source = o.config;
  }
  // Messages name the file and say that the command line changed it (the
  // key they name says which override, if any; listing every --set before
  // the key buried it).
  const auto n = o.overrides.size();
  if (n > 0) *source += fmt::format(" (with {} --set override{})", n, n == 1 ? "" : "s");
  if (!o.device.empty()) *source += " --device " + o.device;
  if (as_written) {
    // The file and the overrides addressed to a phase by name
    // (phase_iii.precision=...): see phase_config.
    *as_written = YAML::Clone(doc);
    std::vector<std::string> by_phase;
    for (const auto& kv : o.overrides) {
      for (const std::string phase : {"phase_i", "phase_ii", "phase_iii", "decouple"}) {
        if (kv.rfind(phase + ".", 0) == 0) by_phase.push_back(kv);
      }
    }
    fsa::io::apply_overrides(*as_written, by_phase);
  }
  auto overrides = o.overrides;
  if (!o.device.empty()) overrides.push_back("device=" + o.device);
  if (o.quiet) overrides.push_back("log.progress=quiet");
  fsa::io::apply_overrides(doc, overrides);
  return doc;
}

fsa::io::Config phase_config(const CommonOptions& o, const std::string& phase) {
  std::string source;
  YAML::Node as_written;
  auto doc = load_document(o, &source, &as_written);
  // Every phase's section of the file is checked, not only this command's: a
  // typo under phase_iii (in the file or in --set phase_iii.key=...) should
  // not wait for the finetune command to be found. A top-level --set is
  // checked with this command's phase only: `fsa train --set
  // train.lr_scheduler.kwargs.milestones=[...]` is meant for Phase I,
  // whatever Phase III's constant learning rate would make of it.
  if (fsa::io::is_pipeline(as_written)) {
    fsa::io::parse_pipeline(as_written, o.config.empty() ? source : o.config);
  }
  return fsa::io::parse_config(fsa::io::phase_document(doc, phase), source);
}

std::string out_dir(const CommonOptions& o, const std::string& fallback) {
  if (!o.out.empty()) return o.out;
  const auto stem = o.config.empty() ? "quickstart" : fs::path(o.config).stem().string();
  return (fs::path("runs") / stem / fallback).string();
}

/// Logs to the console and, once the run folder is known, to its log.txt.
/// The rule for a reused folder (docs/RELIABILITY.md): one that holds an
/// earlier run's outputs (io::run_outputs) is refused, so that two runs
/// never mix in it, unless the command resumes (it continues the run kept
/// there) or --overwrite removes those outputs first. A folder holding only
/// log.txt (a command that stopped on an error) is taken as it is.
void open_run_folder(const std::string& dir, const CommonOptions& o, bool resuming) {
  std::error_code ec;
  auto& group = fsa::dist::world();
  if (group.rank() != 0) {  // rank 0 checks, clears and makes the folder; the others log there
    group.barrier();
    auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(
        (fs::path(dir) / fmt::format("log.rank{}.txt", group.rank())).string(),
        /*truncate=*/false);
    file->set_level(spdlog::level::warn);
    spdlog::default_logger()->sinks().push_back(file);
    return;
  }
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    throw fsa::io::ConfigError(
        fmt::format("--out '{}' is a file; expected a folder for the "
                    "run's outputs",
                    dir));
  }
  std::vector<std::string> removed;
  // A log alone is left by a command that stopped on an error before it
  // wrote anything: the next try goes on in the folder, the log continued.
  auto earlier = fsa::io::run_outputs(dir);
  earlier.erase(std::remove(earlier.begin(), earlier.end(), "log.txt"), earlier.end());
  if (!earlier.empty() && !resuming) {
    if (!o.overwrite) {
      throw fsa::io::ConfigError(fmt::format(
          "--out '{}' holds an earlier run's outputs ({}{}); choose another folder, give "
          "--overwrite to replace them, or --resume to continue that run",
          dir,
          fmt::join(earlier.begin(), earlier.begin() + std::min<size_t>(earlier.size(), 4), ", "),
          earlier.size() > 4 ? fmt::format(" and {} more", earlier.size() - 4) : ""));
    }
    try {
      removed = fsa::io::remove_run_outputs(dir);
    } catch (const std::runtime_error& e) {
      throw fsa::io::ConfigError(fmt::format("--overwrite: {}", e.what()));
    }
  }
  fs::create_directories(dir, ec);
  if (ec) {
    throw fsa::io::ConfigError(
        fmt::format("--out '{}': cannot create the folder: {}", dir, ec.message()));
  }
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(
      (fs::path(dir) / "log.txt").string(), /*truncate=*/false);
  file->set_level(spdlog::level::debug);  // running-loss lines go to the file only
  spdlog::default_logger()->sinks().push_back(file);
  if (!removed.empty()) {
    spdlog::info("--overwrite: removed the earlier run's outputs from '{}': {}", dir,
                 fmt::join(removed, ", "));
  }
  group.barrier();
}

/// The launch torchrun or SLURM describes (one process without them).
const fsa::dist::Launch& launch() {
  static const fsa::dist::Launch l = fsa::dist::launch_from_environment();
  return l;
}

/// Data-parallel launches: joins the run's process group before anything is
/// loaded (the training commands call it with their config). Ranks other
/// than 0 log warnings only, marked with their rank.
void join_ranks(const fsa::io::Config& cfg) {
  const auto& l = launch();
  if (!l.distributed() || fsa::dist::world().size() > 1) return;
  if (cfg.train.batch_size < 2 * l.world_size) {
    throw fsa::io::ConfigError(fmt::format(
        "config {}: key 'train.batch_size': {} is the global batch; {} processes need at least "
        "{} (2 images per process, for batch norm)",
        cfg.source, cfg.train.batch_size, l.world_size, 2 * l.world_size));
  }
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.dist.timeout * 1000));
  // Nothing to save during the rendezvous: Ctrl-C or SIGTERM end it at once.
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  fsa::dist::set_world(fsa::dist::connect(l, cfg.dist.backend, timeout));
  fsa::train::install_interrupt_handlers();
  // Every rank must run the same recipe: one started with another config (a
  // different seed, batch size or dataset) would silently train something else.
  const auto digest = static_cast<int64_t>(std::hash<std::string>{}(fsa::io::to_yaml(cfg)) >> 1);
  const auto digests = fsa::dist::world().all_gather(torch::tensor({digest}, torch::kInt64));
  for (int r = 1; r < l.world_size; ++r) {
    if (digests[r][0].item<int64_t>() != digests[0][0].item<int64_t>()) {
      throw fsa::io::ConfigError(fmt::format(
          "rank {} of {} was started with another config than rank 0 (its resolved settings "
          "differ); every rank must run the same command with the same config and --set "
          "overrides",
          r, l.world_size));
    }
  }
  if (l.rank != 0) {
    spdlog::default_logger()->sinks().front()->set_level(spdlog::level::warn);
    spdlog::set_pattern(fmt::format("[%H:%M:%S] [rank {}] %v", l.rank));
  }
  spdlog::info(
      "data-parallel: {} processes ({}, {} on this machine), {} backend, rendezvous at {}:{}, "
      "dist.timeout {} s; train.batch_size {} is the global batch ({} or {} per process); rank "
      "0 writes the run's files",
      l.world_size, l.launcher, l.local_world_size, fsa::dist::world().backend(), l.master_addr,
      l.master_port, cfg.dist.timeout, cfg.train.batch_size, cfg.train.batch_size / l.world_size,
      (cfg.train.batch_size + l.world_size - 1) / l.world_size);
}

void require_file(const std::string& path, const std::string& what) {
  if (path.empty()) throw fsa::io::ConfigError(fmt::format("{} is required", what));
  if (!fs::exists(path)) {
    throw fsa::io::ConfigError(fmt::format("{} '{}' does not exist", what, path));
  }
}

}  // namespace

/// `fsa export`: the checkpoint's network (with its own architecture,
/// classes and classifier kind) and description, without optimiser state;
/// with `state_dict_only` just the weights, as torch.save(model.state_dict())
/// writes them.
void export_weights(const std::string& from, const std::string& to, bool state_dict_only) {
  fsa::train::CheckpointInfo info;
  const auto model = fsa::train::load_checkpoint_model(from, &info);
  if (state_dict_only) {
    auto state = c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
    for (const auto& p : model->named_parameters()) {
      state.insert(p.key(), p.value().detach().contiguous());
    }
    for (const auto& b : model->named_buffers()) state.insert(b.key(), b.value().detach());
    fsa::io::write_file_atomic(to, fsa::io::torch_save_bytes(state));
  } else {
    fsa::train::save_checkpoint(to, *model, nullptr, info);
  }
  spdlog::info("export: the weights of '{}' ({} with {} classes, {} epochs) written to '{}'{}",
               from, info.arch, info.num_classes, info.epoch, to,
               state_dict_only ? " as a plain state_dict" : "");
}

int main(int argc, char** argv) {
  fsa::train::retain_freed_memory();  // before the first tensor
  spdlog::set_default_logger(spdlog::stdout_color_mt("fsa"));
  spdlog::default_logger()->sinks().front()->set_level(spdlog::level::info);
  spdlog::set_level(spdlog::level::debug);
  spdlog::set_pattern("[%H:%M:%S] %v");
  spdlog::flush_on(spdlog::level::info);     // log.txt is complete even if the run is killed
  fsa::train::install_interrupt_handlers();  // Ctrl-C: stop after the batch, keep the checkpoint

  CLI::App app{
      "fsa: feature space augmentation for long-tailed image classification "
      "(Chu et al., ECCV 2020)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "fsa 0.1.0");

  CommonOptions train_o, extract_o, finetune_o, test_o, run_o, viz_o, decouple_o;
  BenchCommandOptions bench_o;
  std::string resume, extract_ckpt, finetune_ckpt, finetune_resume, decouple_resume, analysis,
      test_ckpt,
      decouple_ckpt, decouple_method;
  bool store = false, offline = false;

  auto* train = app.add_subcommand("train", "Phase I: train a ResNet on the long-tailed set");
  add_run_folder(train, train_o);
  train->add_option("--resume", resume, "resume from this checkpoint (weights, optimiser, epoch)");

  auto* extract = app.add_subcommand(
      "extract", "Phase II: score matrix, confusing classes, class activation maps");
  add_run_folder(extract, extract_o);
  extract->add_option("--checkpoint", extract_ckpt, "Phase I checkpoint");
  extract->add_flag("--store", store, "also write the offline feature store (features.pt)");

  auto* finetune = app.add_subcommand(
      "finetune", "Phase III: fine-tune the classifier with feature-space augmentation");
  add_run_folder(finetune, finetune_o);
  finetune->add_option("--checkpoint", finetune_ckpt, "Phase I checkpoint");
  finetune->add_option("--analysis", analysis, "Phase II analysis.pt");
  finetune->add_flag("--offline", offline, "use Phase II's stored features (offline variant)");
  finetune->add_option("--resume", finetune_resume,
                       "resume from this Phase III checkpoint (head, optimiser, epoch)");

  auto* decouple = app.add_subcommand(
      "decouple", "decoupled classifier learning on a frozen Phase I network: cRT, LWS, tau-norm");
  add_run_folder(decouple, decouple_o);
  decouple->add_option("--checkpoint", decouple_ckpt, "Phase I checkpoint")->required();
  decouple->add_option("--method", decouple_method, "crt, lws or tau_norm (decoupling.method)");
  decouple->add_option("--resume", decouple_resume,
                       "resume cRT from this checkpoint of its own (classifier, optimiser, epoch)");

  auto* test = app.add_subcommand("test", "evaluate a checkpoint on the test set");
  add_run_folder(test, test_o);
  test->add_option("--checkpoint", test_ckpt, "checkpoint to evaluate")->required();

  auto* run = app.add_subcommand(
      "run", "all three phases in order (no arguments: the embedded quickstart)");
  add_run_folder(run, run_o);

  auto* bench = app.add_subcommand(
      "bench", "time every phase against the bare LibTorch work it needs (synthetic data)");
  add_bench_options(bench, bench_o);
  fsa::train::VisualizeOptions viz;
  auto* visualize =
      app.add_subcommand("visualize",
                         "pictures of class activation maps over images (overlays and contact "
                         "sheets), or with --fusion of how fused feature maps are made");
  add_common(visualize, viz_o);
  visualize->add_option("--checkpoint", viz.checkpoint, "checkpoint to look through")->required();
  visualize->add_option("--classes", viz.classes, "classes to draw, e.g. 7,8,9 (default: tail)")
      ->delimiter(',')
      ->check(CLI::Validator(
          [](std::string& value) {  // CLI11 would read "" as class 0
            return value.empty() ? std::string(
                                       "an empty class index; expected class indices "
                                       "such as --classes 7,8,9")
                                 : std::string();
          },
          "CLASS"));
  visualize->add_option("--per-class", viz.per_class, "overlays: images per class (default 8)");
  visualize->add_option("--split", viz.split, "overlays: train or test (default test)");
  visualize->add_flag("--fusion", viz.fusion,
                      "draw fused feature maps instead of overlays (needs --analysis)");
  visualize->add_option("--analysis", viz.analysis, "Phase II analysis.pt (with --fusion)");
  visualize->add_option("--fusion-images", viz.fusion_images,
                        "fusion: tail images, one figure each (default 4)");
  std::vector<std::string> table_runs;
  std::string table_out;
  auto* table = app.add_subcommand(
      "table", "the results table of run folders (Markdown and HTML), mean ± std over seeds");
  table->add_option("runs", table_runs, "run folders (each with metrics.json)")->required();
  table->add_option("--out", table_out, "write OUT.md and OUT.html (default: Markdown to stdout)");
  std::string info_model;
  int64_t info_classes = 0, info_size = 0;
  auto* info = app.add_subcommand(
      "info", "a network's layers, output shapes, parameters and multiply-accumulates");
  info->add_option("--model", info_model,
                   "resnet20/32/44/56/110 (CIFAR) or resnet10/18/34/50/101/152 (ImageNet)")
      ->required();
  info->add_option("--classes", info_classes, "classes (default: 10 CIFAR, 1000 ImageNet)")
      ->check(CLI::Range(int64_t(1), int64_t(1000000)));
  info->add_option("--size", info_size, "input side in pixels (default: 32 CIFAR, 224 ImageNet)")
      ->check(CLI::Range(int64_t(1), int64_t(4096)));

  std::string export_ckpt, export_out;
  auto* export_cmd =
      app.add_subcommand("export",
                         "a checkpoint's weights without its optimiser state: a smaller file for "
                         "sharing, fsa test and Phases II-III (it cannot be resumed)");
  export_cmd->add_option("--checkpoint", export_ckpt, "checkpoint to export")->required();
  export_cmd->add_option("--out", export_out, "the file to write")->required();
  bool export_state_dict = false;
  export_cmd->add_flag("--state-dict", export_state_dict,
                       "write only the weights, a plain state_dict that torchvision's resnetNN "
                       "(ImageNet ResNets) or the usual CIFAR ResNet loads with strict=True, "
                       "and model.pretrained takes");

  fsa::train::PredictOptions predict_o;
  std::string predict_list, predict_root, predict_folder, predict_json, predict_csv,
      predict_logits, predict_features;
  auto* predict = app.add_subcommand(
      "predict",
      "a trained network on your own images: top-k classes with probabilities, with the "
      "checkpoint's own preprocessing and class names");
  predict->add_option("--checkpoint", predict_o.checkpoint,
                      "fsa checkpoint, or a PyTorch state_dict with --model")
      ->required();
  predict->add_option("images", predict_o.images, "image files");
  predict->add_option("--list", predict_list,
                      "a file of image paths, one per line ('path label' lines too)");
  predict->add_option("--root", predict_root, "folder the --list paths are relative to");
  predict->add_option("--folder", predict_folder, "every image under this folder, recursively");
  predict->add_option("--top-k", predict_o.top_k, "classes per image")->capture_default_str();
  predict->add_option("--batch", predict_o.batch_size, "images per forward pass")
      ->capture_default_str();
  predict->add_option("--device", predict_o.device, "cpu, cuda or cuda:N")->capture_default_str();
  predict->add_option("--precision", predict_o.precision,
                      "auto (as the config key: bf16-mixed on CPUs with native bfloat16), fp32 "
                      "or bf16-mixed")
      ->capture_default_str();
  predict->add_option("--threads", predict_o.threads, "intra-op threads (0: all)");
  predict->add_option("--json", predict_json, "write the predictions to this JSON file");
  predict->add_option("--csv", predict_csv, "write the predictions to this CSV file");
  predict->add_option("--logits", predict_logits,
                      "write the logits, float32 [N, C], to this .npy file (NaN rows: images "
                      "not predicted)");
  predict->add_option("--features", predict_features,
                      "write the pooled features, float32 [N, K], to this .npy file");
  predict->add_option("--cam", predict_o.cam_dir,
                      "write class activation map overlays of the predicted class here");
  predict->add_option("--model", predict_o.model,
                      "the network of a plain state_dict (resnet18, resnet32, ...)");
  predict->add_option("--resize", predict_o.resize,
                      "state_dict of an ImageNet ResNet: Resize side (default 256)");
  predict->add_option("--crop", predict_o.crop,
                      "state_dict of an ImageNet ResNet: CenterCrop side (default 224)");

  // CLI11 reads an unknown first word ("fsa trian") as a stray argument and
  // says only that a subcommand is required: name it.
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    std::vector<std::string> names;
    for (const auto* sub : app.get_subcommands({})) {
      names.push_back(sub->get_name());
      known = known || sub->get_name() == argv[1];
    }
    if (!known) {
      std::cerr << fmt::format("fsa: unknown command '{}'; expected one of: {} (fsa --help)\n",
                               argv[1], fmt::join(names, ", "));
      return static_cast<int>(CLI::ExitCodes::ExtrasError);
    }
  }
  CLI11_PARSE(app, argc, argv);

  try {
    if (launch().distributed()) {
      for (const auto* sub : app.get_subcommands()) {
        const auto name = sub->get_name();
        if (name != "train" && name != "extract" && name != "finetune" && name != "decouple" &&
            name != "test" && name != "run") {
          throw fsa::io::ConfigError(fmt::format(
              "fsa {} runs in one process; {} started {} (train, extract, finetune, decouple, "
              "test and run are data-parallel)",
              name, launch().launcher, launch().world_size));
        }
      }
    }
    if (train->parsed()) {
      auto cfg = phase_config(train_o, "phase_i");
      if (!resume.empty()) cfg.checkpoint.resume = resume;
      if (!cfg.checkpoint.resume.empty()) require_file(cfg.checkpoint.resume, "checkpoint.resume");
      if (!cfg.model.pretrained.empty() && cfg.checkpoint.resume.empty()) {
        require_file(cfg.model.pretrained, "model.pretrained");
      }
      fsa::train::keep_resumed_precision(cfg);
      join_ranks(cfg);
      auto ws = fsa::train::make_workspace(cfg);
      const auto dir = out_dir(train_o, "phase_i");
      open_run_folder(dir, train_o, !cfg.checkpoint.resume.empty());
      auto r = fsa::train::run_phase_i(cfg, ws, dir);
      spdlog::info("Phase I done: top-1 {:.2f}%, checkpoint {}", 100 * r.report.top1, r.checkpoint);
    } else if (extract->parsed()) {
      auto cfg = phase_config(extract_o, "phase_ii");
      if (!extract_ckpt.empty()) cfg.checkpoint.load_checkpoint = extract_ckpt;
      cfg.feature.store = cfg.feature.store || store;
      require_file(cfg.checkpoint.load_checkpoint, "the Phase I checkpoint (--checkpoint)");
      join_ranks(cfg);
      auto ws = fsa::train::make_workspace(cfg);
      const auto dir = out_dir(extract_o, "phase_ii");
      open_run_folder(dir, extract_o, false);
      fsa::train::run_phase_ii(cfg, ws, cfg.checkpoint.load_checkpoint, dir);
    } else if (finetune->parsed()) {
      auto cfg = phase_config(finetune_o, "phase_iii");
      if (!finetune_ckpt.empty()) cfg.checkpoint.load_checkpoint = finetune_ckpt;
      if (!analysis.empty()) cfg.finetune.analysis = analysis;
      cfg.finetune.offline = cfg.finetune.offline || offline;
      if (!finetune_resume.empty()) cfg.checkpoint.resume = finetune_resume;
      if (!cfg.checkpoint.resume.empty()) require_file(cfg.checkpoint.resume, "checkpoint.resume");
      fsa::train::keep_resumed_precision(cfg);
      fsa::train::validate_phase_iii(cfg);
      require_file(cfg.checkpoint.load_checkpoint, "the Phase I checkpoint (--checkpoint)");
      require_file(cfg.finetune.analysis, "the Phase II analysis (--analysis)");
      join_ranks(cfg);
      auto ws = fsa::train::make_workspace(cfg);
      fsa::train::load_matching_analysis(cfg.finetune.analysis, ws);
      const auto dir = out_dir(finetune_o, "phase_iii");
      open_run_folder(dir, finetune_o, !cfg.checkpoint.resume.empty());
      auto r = fsa::train::run_phase_iii(cfg, ws, cfg.checkpoint.load_checkpoint,
                                         cfg.finetune.analysis, dir);
      spdlog::info("Phase III done: top-1 {:.2f}%, tail {:.2f}%", 100 * r.report.top1,
                   100 * r.report.tail.value_or(0));
    } else if (decouple->parsed()) {
      if (!decouple_method.empty()) {
        decouple_o.overrides.push_back("decoupling.method=" + decouple_method);
      }
      auto cfg = phase_config(decouple_o, "decouple");
      if (!decouple_resume.empty()) cfg.checkpoint.resume = decouple_resume;
      if (!cfg.checkpoint.resume.empty()) require_file(cfg.checkpoint.resume, "checkpoint.resume");
      fsa::train::keep_resumed_precision(cfg);
      std::string source;
      const auto doc = load_document(decouple_o, &source);
      if (fsa::io::is_pipeline(doc) && !doc["decouple"] && cfg.decoupling.method != "tau_norm") {
        throw fsa::io::ConfigError(fmt::format(
            "config {}: {} trains a classifier, and this pipeline file has no 'decouple' section "
            "with its schedule (train.num_epoch, optimizer, lr_scheduler, sampler); see "
            "configs/methods/cifar10_lt_im100_{}.yaml",
            source, cfg.decoupling.method, cfg.decoupling.method));
      }
      require_file(decouple_ckpt, "the Phase I checkpoint (--checkpoint)");
      join_ranks(cfg);
      auto ws = fsa::train::make_workspace(cfg);
      const auto dir = out_dir(decouple_o, "decouple_" + cfg.decoupling.method);
      open_run_folder(dir, decouple_o, !cfg.checkpoint.resume.empty());
      fsa::train::run_decouple(cfg, ws, decouple_ckpt, dir);
    } else if (test->parsed()) {
      auto cfg = phase_config(test_o, "phase_iii");
      require_file(test_ckpt, "--checkpoint");
      join_ranks(cfg);
      auto ws = fsa::train::make_workspace(cfg);
      const auto dir = out_dir(test_o, "test");
      open_run_folder(dir, test_o, false);
      fsa::train::run_test(cfg, ws, test_ckpt, dir);
    } else if (predict->parsed()) {
      auto& images = predict_o.images;
      if (!predict_list.empty()) {
        const auto listed = fsa::train::images_in_list(predict_list, predict_root);
        images.insert(images.end(), listed.begin(), listed.end());
      } else if (!predict_root.empty()) {
        throw fsa::io::ConfigError("--root applies to the paths of --list; give --list too");
      }
      if (!predict_folder.empty()) {
        const auto found = fsa::train::images_in_folder(predict_folder);
        images.insert(images.end(), found.begin(), found.end());
      }
      // The outputs are checked before any image is read: none may be an
      // input, another output or a folder, and each folder must exist.
      const std::vector<std::pair<std::string, std::string>> outputs{
          {"--json", predict_json},
          {"--csv", predict_csv},
          {"--logits", predict_logits},
          {"--features", predict_features}};
      std::set<std::string> inputs;
      for (const auto& p : images) inputs.insert(fs::weakly_canonical(p).string());
      inputs.insert(fs::weakly_canonical(predict_o.checkpoint).string());
      for (const auto& [option, file] : outputs) {
        if (file.empty()) continue;
        const auto canonical = fs::weakly_canonical(file).string();
        std::error_code ec;
        if (fs::is_directory(file, ec)) {
          throw fsa::io::ConfigError(
              fmt::format("{} '{}' is a folder; expected a file name", option, file));
        }
        const auto parent = fs::absolute(file).parent_path();
        if (!fs::is_directory(parent, ec)) {
          throw fsa::io::ConfigError(fmt::format("{} '{}': the folder '{}' does not exist", option,
                                                 file, parent.string()));
        }
        if (!inputs.insert(canonical).second) {
          throw fsa::io::ConfigError(fmt::format(
              "{} '{}' is an input (the checkpoint, an image) or another output of this command; "
              "choose another file name",
              option, file));
        }
      }
      if (!predict_o.cam_dir.empty() && fs::exists(predict_o.cam_dir) &&
          !fs::is_directory(predict_o.cam_dir)) {
        throw fsa::io::ConfigError(fmt::format(
            "--cam '{}' is a file; expected a folder for the overlays", predict_o.cam_dir));
      }
      const auto result = fsa::train::predict(predict_o);
      std::cout << fsa::train::predictions_table(result) << std::flush;
      auto write = [&](const std::string& option, const std::string& file,
                       const std::string& bytes) {
        if (file.empty()) return;
        try {
          fsa::io::write_file_atomic(file, bytes);
        } catch (const std::exception& e) {
          throw fsa::io::ConfigError(
              fmt::format("{} '{}' cannot be written: {}", option, file, e.what()));
        }
      };
      // File names that are not UTF-8 are written with U+FFFD in the JSON.
      write("--json", predict_json,
            fsa::train::predictions_json(result).dump(2, ' ', false,
                                                      nlohmann::json::error_handler_t::replace) +
                "\n");
      write("--csv", predict_csv, fsa::train::predictions_csv(result));
      write("--logits", predict_logits, fsa::io::npy_bytes(result.logits));
      write("--features", predict_features, fsa::io::npy_bytes(result.features));
      if (const auto failed = result.failed(); failed > 0) {
        const auto n = result.images.size();
        throw fsa::data::DataError(fmt::format(
            "predict: {} of {} image{} could not be predicted (each named above){}", failed, n,
            n == 1 ? "" : "s",
            failed < static_cast<int64_t>(n) ? "; the others' predictions were written" : ""));
      }
    } else if (export_cmd->parsed()) {
      require_file(export_ckpt, "--checkpoint");
      export_weights(export_ckpt, export_out, export_state_dict);
    } else if (table->parsed()) {
      std::vector<fsa::io::ResultRow> rows;
      for (const auto& dir : table_runs) {
        try {
          const auto more = fsa::io::read_result_rows(dir);
          rows.insert(rows.end(), more.begin(), more.end());
        } catch (const std::runtime_error& e) {
          throw fsa::io::ConfigError(e.what());
        }
      }
      const auto groups = fsa::io::group_results(rows);
      const auto markdown = fsa::io::results_markdown(groups);
      if (table_out.empty()) {
        std::cout << markdown << std::flush;
      } else {
        fsa::io::write_file_atomic(table_out + ".md", markdown);
        fsa::io::write_file_atomic(table_out + ".html", fsa::io::results_html(groups));
        spdlog::info("table: {} rows from {} run folders in {}.md and {}.html", groups.size(),
                     table_runs.size(), table_out, table_out);
      }
    } else if (info->parsed()) {
      std::shared_ptr<fsa::models::Backbone> model;
      try {
        model = fsa::models::make_model(info_model, info_classes > 0 ? info_classes : 1);
        if (info_classes == 0) {
          model = fsa::models::make_model(info_model, model->input_size() == 224 ? 1000 : 10);
        }
      } catch (const std::invalid_argument& e) {
        throw fsa::io::ConfigError(e.what());
      }
      const auto side = info_size > 0 ? info_size : model->input_size();
      std::cout << fsa::models::format_summary(fsa::models::summarize(*model, side, side))
                << std::flush;
    } else if (run->parsed()) {
      std::string source;
      auto doc = load_document(run_o, &source);
      auto cfg = fsa::io::parse_pipeline(doc, source);
      fsa::train::validate_pipeline(cfg);
      if (!cfg.phase_i.model.pretrained.empty() && cfg.phase_i.checkpoint.resume.empty()) {
        require_file(cfg.phase_i.model.pretrained, "model.pretrained");
      }
      fsa::train::keep_resumed_precision(cfg.phase_i);
      fsa::train::keep_resumed_precision(cfg.phase_iii);
      join_ranks(cfg.phase_i);
      auto ws = fsa::train::make_workspace(cfg.phase_i);
      fsa::train::validate_pipeline_data(cfg, ws);  // before the run folder is made
      const auto dir = run_o.out.empty() && run_o.config.empty()
                           ? std::string("runs/quickstart")
                           : (run_o.out.empty() ? out_dir(run_o, "") : run_o.out);
      open_run_folder(
          dir, run_o,
          !cfg.phase_i.checkpoint.resume.empty() || !cfg.phase_iii.checkpoint.resume.empty());
      fsa::train::run_pipeline(cfg, ws, dir);  // logs the Phase I / Phase III table at the end
    } else if (bench->parsed()) {
      auto options = bench_o.bench;
      options.layer2 = !bench_o.no_layer2;
      options.channels_last = !bench_o.no_channels_last;
      options.bf16_mixed = !bench_o.no_bf16;
      options.jpeg = !bench_o.no_jpeg;
      options.losses = !bench_o.no_losses;
      if (!bench_o.json.empty()) {  // before minutes of timing, not after
        const auto parent = fs::absolute(bench_o.json).parent_path();
        std::error_code ec;
        if (!fs::is_directory(parent, ec) && !fs::create_directories(parent, ec)) {
          throw fsa::io::ConfigError(fmt::format("--json '{}': cannot create its folder '{}'",
                                                 bench_o.json, parent.string()));
        }
        if (fs::is_directory(bench_o.json, ec)) {
          throw fsa::io::ConfigError(
              fmt::format("--json '{}' is a folder; expected a file name", bench_o.json));
        }
      }
      const auto result = fsa::bench::run_bench(options);
      if (!bench_o.json.empty()) {
        fsa::io::write_file_atomic(bench_o.json, result.dump(2) + "\n");
        spdlog::info("bench: figures written to {}", bench_o.json);
      }
      std::cout << "\n" << fsa::bench::format_bench(result) << std::flush;
    } else if (visualize->parsed()) {
      auto cfg = phase_config(viz_o, "phase_iii");
      require_file(viz.checkpoint, "--checkpoint");
      auto ws = fsa::train::make_workspace(cfg);
      viz.out_dir = out_dir(viz_o, "visualize");
      fsa::train::run_visualize(cfg, ws, viz);  // validates before it creates the folder
    }
  } catch (const fsa::train::Interrupted& e) {
    spdlog::warn("fsa: {}", e.what());
    return 128 + e.signal;
  } catch (const fsa::io::ConfigError& e) {
    spdlog::error("fsa: configuration error: {}", e.what());
    return 2;
  } catch (const fsa::data::DataError& e) {
    spdlog::error("fsa: data error: {}", e.what());
    return 3;
  } catch (const fsa::train::CheckpointError& e) {
    spdlog::error("fsa: checkpoint error: {}", e.what());
    return 4;
  } catch (const fsa::train::TrainingError& e) {
    spdlog::error("fsa: training stopped: {}", e.what());
    return 5;
  } catch (const c10::Error& e) {  // a LibTorch check: its message, without the C++ backtrace
    spdlog::error("fsa: error: {}", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("fsa: error: {}", e.what());
    return 1;
  }
  return 0;
}
