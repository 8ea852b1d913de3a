#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <torch/cuda.h>
#include <torch/nn/functional/loss.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "fsa/data/inputs.h"
#include "fsa/dist/dist.h"
#include "fsa/io/files.h"
#include "fsa/io/report.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/loss.h"
#include "fsa/train/phases.h"
#include "fsa/train/precision.h"
#include "internal.h"

namespace fs = std::filesystem;

namespace fsa::train {

namespace detail {

at::Generator epoch_generator(uint64_t seed, uint64_t phase_tag, int64_t epoch) {
  // splitmix64 over the three values: nearby seeds give unrelated streams.
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL ^ (phase_tag << 32) ^ uint64_t(epoch);
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return at::make_generator<at::CPUGeneratorImpl>(x);
}

namespace {

/// Leaf values of a YAML mapping by dotted path (sequences are leaves).
void flatten(const YAML::Node& node, const std::string& prefix,
             std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      const auto key = kv.first.as<std::string>();
      flatten(kv.second, prefix.empty() ? key : prefix + "." + key, out);
    }
    return;
  }
  YAML::Emitter e;
  e << YAML::Flow << node;
  out[prefix] = e.c_str();
}

bool under(const std::string& key, const std::vector<std::string>& prefixes) {
  return std::any_of(prefixes.begin(), prefixes.end(),
                     [&](const std::string& p) { return key == p || key.rfind(p + ".", 0) == 0; });
}

}  // namespace

ConfigDifferences resume_differences(const std::string& stored_yaml, const io::Config& now,
                                     const std::string& phase) {
  // Both through the current schema, so that keys added since the
  // checkpoint was written compare as their defaults.
  auto stored = io::parse_config(YAML::Load(stored_yaml), "the checkpoint's config");
  if (stored.dataset.mean.empty()) {  // written before config.yaml said the defaults used
    stored.dataset.mean = now.dataset.mean;
    stored.dataset.std = now.dataset.std;
  }
  std::map<std::string, std::string> before, after;
  flatten(YAML::Load(io::to_yaml(stored)), "", before);
  flatten(YAML::Load(io::to_yaml(now)), "", after);
  std::vector<std::string> meaning{"random_seed",
                                   "dataset.name",
                                   "dataset.kwargs",
                                   "dataset.normalize",
                                   "dataset.val_fraction",
                                   "dataset.train_list",
                                   "dataset.val_list",
                                   "dataset.test_list",
                                   "dataset.num_classes",
                                   "dataset.transform",
                                   "model",
                                   "train.batch_size",
                                   "train.gradient_clip",
                                   "train.loss",
                                   "train.sampler",
                                   "train.optimizer",
                                   "train.lr_scheduler"};
  if (phase == "phase_iii") {
    for (const auto* k : {"finetune.Na", "finetune.Nf", "finetune.ts", "finetune.tg",
                          "finetune.confusing_from", "finetune.head_ratio", "finetune.head_classes",
                          "finetune.offline", "feature.cam_layers"}) {
      meaning.emplace_back(k);
    }
  }
  ConfigDifferences out;
  std::set<std::string> keys;
  for (const auto& [k, v] : before) keys.insert(k);
  for (const auto& [k, v] : after) keys.insert(k);
  for (const auto& key : keys) {
    if (key == "checkpoint.resume") continue;  // differs by definition
    const auto a = before.count(key) ? before.at(key) : "(none)";
    const auto b = after.count(key) ? after.at(key) : "(none)";
    if (a == b) continue;
    (under(key, meaning) ? out.refused : out.overrides)
        .push_back(fmt::format("{}: {} → {}", key, a, b));
  }
  return out;
}

void check_resume(const io::Config& cfg, const Workspace& ws, const std::string& phase,
                  const std::string& cam_layer) {
  const auto& path = cfg.checkpoint.resume;
  if (path.empty()) return;
  const auto info = read_checkpoint_info(path);
  if (info.phase != phase || (!cam_layer.empty() && info.cam_layer != cam_layer)) {
    throw CheckpointError(fmt::format(
        "checkpoint.resume '{}' is a {} checkpoint{}; {} resumes only from its own checkpoints{}",
        path, info.phase, info.cam_layer.empty() ? "" : " at CAM layer '" + info.cam_layer + "'",
        phase, cam_layer.empty() ? "" : " at '" + cam_layer + "'"));
  }
  // A mid-epoch checkpoint has begun epoch + 1: the schedule must include it.
  const int64_t needed = info.epoch + (info.step > 0 ? 1 : 0);
  if (needed > cfg.train.num_epoch) {
    throw io::ConfigError(
        fmt::format("config {}: key 'train.num_epoch': checkpoint.resume '{}' has already {} {} "
                    "epochs, more than train.num_epoch = {}; expected at least {}",
                    cfg.source, path, info.step > 0 ? "begun" : "finished", needed,
                    cfg.train.num_epoch, needed));
  }
  if (!info.fingerprint.dataset.empty()) {
    const auto diff = info.fingerprint.differences(ws.data.fingerprint);
    if (!diff.empty()) {
      throw CheckpointError(fmt::format(
          "checkpoint.resume '{}' was trained on another training set than this config "
          "describes (checkpoint vs now: {}); resume with the data and settings it was trained "
          "with",
          path, diff));
    }
  }
  if (!info.class_names.empty() && info.class_names != ws.data.train.class_names) {
    size_t c = 0;
    while (c < info.class_names.size() && c < ws.data.train.class_names.size() &&
           info.class_names[c] == ws.data.train.class_names[c]) {
      ++c;
    }
    throw CheckpointError(fmt::format(
        "checkpoint.resume '{}' was trained with other classes: class {} is '{}' there and '{}' "
        "now (renamed or reordered class folders?)",
        path, c, c < info.class_names.size() ? info.class_names[c] : "(none)",
        c < ws.data.train.class_names.size() ? ws.data.train.class_names[c] : "(none)"));
  }
  ConfigDifferences diff;
  try {
    diff = resume_differences(info.config, resolved(cfg, ws.data), phase);
  } catch (const std::exception& e) {  // a config of an older schema
    spdlog::warn(
        "{}: the config stored in '{}' cannot be compared with this one ({}); make "
        "sure the run means the same",
        phase, path, short_message(e));
  }
  if (!diff.refused.empty()) {
    throw CheckpointError(fmt::format(
        "checkpoint.resume '{}' was trained with other settings, and resuming would mix two "
        "runs: {}; resume with the config it was trained with (its config.yaml), or start a new "
        "run",
        path, fmt::join(diff.refused, "; ")));
  }
  for (const auto& line : diff.overrides) {
    spdlog::info("{}: resuming with a setting that differs from the checkpoint's: {}", phase, line);
  }
  if (info.epoch == cfg.train.num_epoch) {
    spdlog::info(
        "{}: '{}' has finished all {} epochs; completing the run's outputs "
        "(metrics.json, the report) without training",
        phase, path, info.epoch);
  }
}

io::Config resolved(const io::Config& cfg, const data::LongTailDataset& data) {
  auto out = cfg;
  out.dataset.mean = data.mean;
  out.dataset.std = data.std;
  return out;
}

void prepare_out_dir(const std::string& out_dir, const io::Config& cfg,
                     const data::LongTailDataset& data) {
  if (!dist::is_main()) return;  // data-parallel: rank 0 writes the run's files
  fs::create_directories(out_dir);
  for (const auto& folder : {fs::path(out_dir), fs::path(out_dir) / "checkpoints"}) {
    for (const auto& removed : io::remove_stale_temporaries(folder.string())) {
      spdlog::info("removed '{}', left by a run that was killed while saving", removed);
    }
  }
  io::write_file_atomic((fs::path(out_dir) / "config.yaml").string(),
                        io::to_yaml(resolved(cfg, data)));
}

void write_json(const std::string& path, const nlohmann::json& j) {
  if (!dist::is_main()) return;
  io::write_file_atomic(path, j.dump(2) + "\n");
}

std::shared_ptr<models::Backbone> build_model(const io::Config& cfg, const Workspace& ws) {
  std::shared_ptr<models::Backbone> model;
  // Initial weights depend on the run seed alone, not on what ran before.
  torch::manual_seed(ws.seed);
  try {
    model = models::make_model(cfg.model.name, ws.data.num_classes());
    if (cfg.model.classifier == "cosine") model->use_cosine_classifier();
    // Validates the layer; in evaluation mode, since batch norm cannot train
    // on one value per channel (ImageNet ResNets shrink 32 pixels to 1).
    torch::NoGradGuard no_grad;
    model->eval();
    model->features(torch::zeros({1, 3, 32, 32}), cfg.feature.cam_layer);
    model->train();
  } catch (const std::invalid_argument& e) {
    throw io::ConfigError(fmt::format("config {}: {}", cfg.source, e.what()));
  }
  model->to(ws.device);
  model->use_channels_last(cfg.channels_last());
  return model;
}

RunningStats::RunningStats(torch::Device device, std::string phase, int64_t epoch)
    : phase_(std::move(phase)),
      epoch_(epoch),
      sync_every_(device.is_cuda() ? 20 : 1),
      loss_sum_(torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device))),
      correct_(torch::zeros({}, torch::TensorOptions().dtype(torch::kInt64).device(device))) {}

void RunningStats::add(const torch::Tensor& loss, const torch::Tensor& logits,
                       const torch::Tensor& targets, int64_t batch) {
  const auto n = targets.size(0);
  loss_sum_ += loss.detach().to(torch::kFloat64) * n;
  correct_ += logits.detach().argmax(1).eq(targets).sum();
  seen_ += n;
  if (batch % sync_every_ == 0) sync(batch);
}

nlohmann::json RunningStats::state() const {
  return {{"loss_sum", host_loss_}, {"correct", host_correct_}, {"seen", host_seen_}};
}

void RunningStats::restore(const nlohmann::json& state) {
  host_loss_ = state.at("loss_sum").get<double>();
  host_correct_ = state.at("correct").get<int64_t>();
  seen_ = host_seen_ = state.at("seen").get<int64_t>();
  loss_sum_.fill_(host_loss_);
  correct_.fill_(host_correct_);
}

void RunningStats::combine_ranks() {
  auto& group = dist::world();
  if (group.size() == 1) return;
  auto sums = torch::tensor(
      {host_loss_, static_cast<double>(host_correct_), static_cast<double>(host_seen_)},
      torch::kFloat64);
  group.all_reduce_sum_(sums);
  host_loss_ = sums[0].item<double>();
  host_correct_ = static_cast<int64_t>(sums[1].item<double>());
  host_seen_ = static_cast<int64_t>(sums[2].item<double>());
}

void RunningStats::sync(int64_t batch) {
  host_loss_ = loss_sum_.item<double>();
  host_correct_ = correct_.item<int64_t>();
  host_seen_ = seen_;
  if (!std::isfinite(host_loss_)) {
    throw TrainingError(fmt::format(
        "{}: the loss became {} at epoch {}, by batch {}; training diverged (try a lower "
        "train.optimizer.kwargs.lr or set train.gradient_clip)",
        phase_, host_loss_, epoch_, batch));
  }
}

std::unique_ptr<io::Progress> make_progress(const io::Config& cfg, const std::string& label,
                                            int64_t steps) {
  auto mode = io::Progress::Mode::kAuto;
  if (cfg.log.progress == "bar") mode = io::Progress::Mode::kBar;
  if (cfg.log.progress == "lines") mode = io::Progress::Mode::kLines;
  if (cfg.log.progress == "quiet") mode = io::Progress::Mode::kQuiet;
  return std::make_unique<io::Progress>(label, std::max<int64_t>(steps, 1), std::cerr, mode);
}

void write_report_safely(const std::string& out_dir) {
  if (!dist::is_main()) return;
  try {
    const auto files = io::write_report(out_dir);
    for (const auto& m : files.missing) {
      spdlog::warn("report: {} not drawn: {}", m.file, m.reason);
    }
    spdlog::info("report: {}", files.html);
  } catch (const std::exception& e) {
    spdlog::warn("report not written: {}", e.what());
  }
}

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(std::lround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
}

std::string short_message(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  const std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  return text.substr(0, text.find('\n'));
}

std::optional<double> resident_mib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // "... kB"
  }
  return std::nullopt;
}

torch::Tensor split_features(models::Backbone& model, const Workspace& ws,
                             const data::ImageSet& split, const std::string& layer, int64_t batch,
                             bool bf16_mixed) {
  torch::NoGradGuard no_grad;
  model.eval();
  std::vector<torch::Tensor> out;
  data::SequentialBatches input(ws.data, split, batch, ws.device);
  while (auto b = input.next()) {
    AutocastGuard autocast(ws.device, bf16_mixed);
    out.push_back(model.features(b->inputs, layer).to(torch::kFloat32));
  }
  return torch::cat(out, 0);
}

SplitFeatures evaluation_features(models::Backbone& model, const Workspace& ws,
                                  const std::string& layer, int64_t batch, bool bf16_mixed) {
  SplitFeatures maps;
  maps.test = split_features(model, ws, ws.data.test, layer, batch, bf16_mixed);
  if (ws.data.val.size() > 0) {
    maps.val = split_features(model, ws, ws.data.val, layer, batch, bf16_mixed);
  }
  return maps;
}

const data::ImageSet& split_images(const data::LongTailDataset& data, Split split) {
  return split == Split::kTest ? data.test : data.val;
}

namespace {

/// The report over the batches `next` yields (float32 logits [B, C] and
/// int64 labels [B] on `device`, nullopt after the last): mean
/// cross-entropy and accuracies, the logits first adjusted by τ·log π when
/// `logit_adjust_tau` is not 0 (Menon et al. 2021).
template <typename NextBatch>
/// The report of the batches `next` gives. `sharded`: each rank was given
/// its share of the split (data-parallel evaluation), and the counts and
/// loss are summed over the ranks, so that every rank gets the report of
/// the whole split.
eval::Report accumulate_report(const data::LongTailDataset& train, torch::Device device,
                               double logit_adjust_tau, NextBatch next, bool sharded = false) {
  torch::NoGradGuard no_grad;
  const auto log_prior =
      logit_adjust_tau != 0 ? log_class_prior(train.class_counts).to(device) : torch::Tensor();
  eval::AccuracyMeter meter(train.num_classes());
  auto loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
  int64_t n = 0;
  while (auto batch = next()) {
    throw_if_interrupted("an evaluation", "its results were not written");
    auto& [logits, labels] = *batch;
    if (log_prior.defined()) logits = adjust_logits(logits, log_prior, logit_adjust_tau);
    loss_sum += torch::nn::functional::cross_entropy(
        logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    meter.update(logits, labels);
    n += labels.size(0);
  }
  double loss = loss_sum.item<double>();
  if (sharded && dist::world().size() > 1) {  // every rank saw its share: sum the counts
    auto counts = meter.confusion();
    dist::world().all_reduce_sum_(counts);
    meter.set_confusion(counts);
    auto sums = torch::tensor({loss, static_cast<double>(n)}, torch::kFloat64);
    dist::world().all_reduce_sum_(sums);
    loss = sums[0].item<double>();
    n = static_cast<int64_t>(sums[1].item<double>());
  }
  return eval::make_report(meter, train.class_counts, train.head, n ? loss / double(n) : 0.0);
}

}  // namespace

eval::Report evaluate_head(models::Backbone& model, const torch::Tensor& features,
                           const torch::Tensor& labels, const Workspace& ws,
                           const std::string& layer, int64_t batch, bool bf16_mixed,
                           double logit_adjust_tau) {
  const auto n = features.size(0);
  const auto targets = labels.to(ws.device);
  int64_t s = 0;
  return accumulate_report(ws.data, ws.device, logit_adjust_tau,
                           [&]() -> std::optional<std::pair<torch::Tensor, torch::Tensor>> {
                             if (s >= n) return std::nullopt;
                             const auto len = std::min(batch, n - s);
                             AutocastGuard autocast(ws.device, bf16_mixed);
                             auto logits =
                                 model.head(features.narrow(0, s, len), layer).to(torch::kFloat32);
                             auto y = targets.narrow(0, s, len);
                             s += len;
                             return std::pair{logits, y};
                           });
}

PhaseResult phase_result(const FitResult& fitted, const io::Config& cfg, const Workspace& ws) {
  PhaseResult result;
  result.report = fitted.last;
  result.checkpoint = fitted.last_checkpoint;
  result.best_checkpoint = fitted.best_checkpoint;
  result.metrics = report_json(result.report, ws.data.class_counts);
  result.metrics["best_top1"] = fitted.best_top1;
  result.metrics["best_epoch"] = fitted.best_epoch;
  result.metrics["best_selected_on"] = fitted.selected_on;
  if (fitted.best_val_top1) result.metrics["best_val_top1"] = *fitted.best_val_top1;
  if (ws.data.val.size() > 0) result.metrics["val_images"] = ws.data.val.size();
  result.metrics["final_epoch"] = cfg.train.num_epoch;
  result.metrics["history"] = fitted.history;
  result.metrics["class_names"] = ws.data.train.class_names;
  return result;
}

}  // namespace detail

torch::Device parse_device(const std::string& name) {
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(name);
  } catch (const c10::Error&) {
    throw io::ConfigError(fmt::format("device '{}': expected cpu, cuda or cuda:N", name));
  }
  if (device.is_cuda()) {
    if (!torch::cuda::is_available()) {
      throw io::ConfigError(
          fmt::format("device '{}': this fsa build or machine has no CUDA GPU; "
                      "use --device cpu",
                      name));
    }
    const auto index = device.has_index() ? device.index() : 0;
    if (index >= static_cast<int64_t>(torch::cuda::device_count())) {
      throw io::ConfigError(
          fmt::format("device '{}': only {} CUDA device(s)", name, torch::cuda::device_count()));
    }
  } else if (!device.is_cpu()) {
    throw io::ConfigError(fmt::format("device '{}': expected cpu, cuda or cuda:N", name));
  }
  return device;
}

void keep_resumed_precision(io::Config& cfg) {
  if (cfg.checkpoint.resume.empty() || !(cfg.precision_auto || cfg.memory_format_auto)) return;
  YAML::Node before;
  try {
    before = YAML::Load(read_checkpoint_info(cfg.checkpoint.resume).config);
  } catch (const YAML::Exception&) {
    return;  // check_resume reports a config it cannot compare
  }
  const auto adopt = [&](bool is_auto, const char* key, std::string& value) {
    if (!is_auto || !before.IsMap() || !before[key] || !before[key].IsScalar()) return;
    const auto began = before[key].as<std::string>();
    if (began == value) return;
    spdlog::info("{} 'auto': {} as the run in '{}' began (a new run here would use {})", key, began,
                 cfg.checkpoint.resume, value);
    value = began;
  };
  adopt(cfg.precision_auto, "precision", cfg.precision);
  adopt(cfg.memory_format_auto, "memory_format", cfg.memory_format);
}

Workspace make_workspace(const io::Config& cfg) {
  Workspace ws;
  ws.device = parse_device(cfg.device);
  const auto hw = std::max(1u, std::thread::hardware_concurrency());
  // threads 0: this process's part of the machine (its cores shared among
  // the data-parallel ranks on it).
  const int threads = cfg.threads > 0
                          ? static_cast<int>(cfg.threads)
                          : std::max(1, static_cast<int>(hw) / dist::world().local_size());
  torch::set_num_threads(threads);
  ws.seed = cfg.random_seed.value_or(std::random_device{}());
  if (!cfg.random_seed && dist::world().size() > 1) {  // every rank draws rank 0's seed
    auto seed = torch::tensor({static_cast<int64_t>(ws.seed)}, torch::kInt64);
    dist::world().broadcast_(seed, 0);
    ws.seed = static_cast<uint64_t>(seed.item<int64_t>());
  }
  if (!cfg.random_seed) {
    spdlog::info(
        "random_seed is null: this run drew seed {} (--set random_seed={} repeats it, "
        "and the phases run alone need it)",
        ws.seed, ws.seed);
  }
  torch::manual_seed(ws.seed);
  ws.data = data::load_long_tail_dataset(cfg.dataset, cfg.finetune, ws.seed, threads);
  detail::build_model(cfg, ws);  // an unknown model or CAM layer fails here, before any output
  if (cfg.test.logit_adjust_tau != 0) {
    for (size_t c = 0; c < ws.data.class_counts.size(); ++c) {
      if (ws.data.class_counts[c] < 1) {
        throw io::ConfigError(fmt::format(
            "config {}: key 'test.logit_adjust_tau': class {} has no training image, so its prior "
            "log π is −∞; logit adjustment needs every class in the training set",
            cfg.source, c));
      }
    }
  }
  if (ws.device.is_cuda()) {
    // Fixed shapes every batch: let cuDNN pick the fastest convolution once.
    at::globalContext().setBenchmarkCuDNN(true);
    if (!ws.data.file_backed()) {  // small images live on the GPU; files are decoded per batch
      ws.data.train.images = ws.data.train.images.to(ws.device);
      ws.data.test.images = ws.data.test.images.to(ws.device);
      if (ws.data.val.size() > 0) ws.data.val.images = ws.data.val.images.to(ws.device);
    }
  }
  const auto [min_count, max_count] =
      std::minmax_element(ws.data.class_counts.begin(), ws.data.class_counts.end());
  spdlog::info(
      "{}: {} training images in {} classes (imbalance factor {:.4g}, {} head classes), "
      "{} test images{}; {} threads on {}, precision {}, memory format {}",
      cfg.dataset.name, ws.data.train.size(), ws.data.num_classes(),
      double(*max_count) / double(*min_count),
      std::count(ws.data.head.begin(), ws.data.head.end(), true), ws.data.test.size(),
      ws.data.val.size() > 0
          ? fmt::format(", {} validation images ({}; they choose the best epoch)",
                        ws.data.val.size(),
                        cfg.dataset.val_list.empty()
                            ? fmt::format("{:g} of each class held out of training",
                                          cfg.dataset.val_fraction)
                            : "dataset.val_list")
          : std::string(),
      threads, ws.device.str(), cfg.precision, cfg.memory_format);
  if (!cfg.notices.empty()) {
    spdlog::info(
        "config {}: {} key{} of the reference implementation's layout, taken as "
        "follows:\n  {}",
        cfg.source, cfg.notices.size(), cfg.notices.size() == 1 ? "" : "s",
        fmt::join(cfg.notices, "\n  "));
  }
  if (cfg.precision_auto) {
    spdlog::info("precision 'auto': {}",
                 ws.device.is_cuda()
                     ? "fp32 on CUDA (bf16-mixed is an option there, not yet measured on the "
                       "full schedule)"
                 : io::native_bf16_cpu()
                     ? "bf16-mixed, as this CPU has native bfloat16 (AVX-512 BF16); the full "
                       "CIFAR-10-LT schedule lands within 0.1 point of fp32 (docs/RESULTS.md)"
                     : "fp32, as this CPU has no native bfloat16 (emulated bfloat16 is slower "
                       "than fp32)");
  }
  if (cfg.memory_format_auto) {
    spdlog::info("memory_format 'auto': {} (channels_last goes with bf16-mixed on the CPU)",
                 cfg.memory_format);
  }
  return ws;
}

eval::Report evaluate(models::Backbone& model, const data::ImageSet& test,
                      const data::LongTailDataset& train, torch::Device device, int64_t batch_size,
                      bool bf16_mixed, double logit_adjust_tau) {
  torch::NoGradGuard no_grad;
  model.eval();
  // Data-parallel: each rank evaluates its contiguous share of the split,
  // and the counts are summed (the same report as one process's).
  auto& group = dist::world();
  std::optional<data::ImageSet> shard;
  if (group.size() > 1) {
    const auto [begin, end] = data::batch_share(test.size(), group.rank(), group.size());
    shard = test.select(torch::arange(begin, end));
  }
  data::SequentialBatches input(train, shard ? *shard : test, batch_size, device);
  return detail::accumulate_report(
      train, device, logit_adjust_tau,
      [&]() -> std::optional<std::pair<torch::Tensor, torch::Tensor>> {
        auto batch = input.next();
        if (!batch) return std::nullopt;
        AutocastGuard autocast(device, bf16_mixed);
        return std::pair{model.forward(batch->inputs).to(torch::kFloat32), batch->labels};
      },
      /*sharded=*/true);
}

nlohmann::json report_json(const eval::Report& r, const std::vector<int64_t>& class_counts) {
  auto opt = [](const std::optional<double>& v) -> nlohmann::json {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  nlohmann::json per_class = nlohmann::json::array();
  for (double v : r.per_class) {
    per_class.push_back(std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v));
  }
  nlohmann::json j{{"top1", r.top1}, {"per_class", per_class}};
  for (const auto& [name, value] : eval::group_accuracies(r)) j[name] = opt(value);
  j["loss"] = r.loss;
  j["class_counts"] = class_counts;
  // The confusion matrix (rows: true class) for reports; left out for very
  // many classes, where it would dominate the file.
  if (r.confusion.defined() && r.confusion.size(0) <= 200) {
    auto c = r.confusion.accessor<int64_t, 2>();
    nlohmann::json rows = nlohmann::json::array();
    for (int64_t i = 0; i < r.confusion.size(0); ++i) {
      std::vector<int64_t> row(c[i].data(), c[i].data() + r.confusion.size(1));
      rows.push_back(row);
    }
    j["confusion"] = rows;
  }
  return j;
}

std::string format_comparison(const eval::Report& before, const eval::Report& after,
                              const data::LongTailDataset& data) {
  std::ostringstream os;
  auto pct = [](const std::optional<double>& v) {
    return v ? fmt::format("{:6.2f}", 100.0 * *v) : std::string("     -");
  };
  auto delta = [](const std::optional<double>& a, const std::optional<double>& b) {
    return a && b ? fmt::format("{:+6.2f}", 100.0 * (*b - *a)) : std::string("     -");
  };
  os << fmt::format("{:<22} {:>8} {:>10} {:>7}\n", "top-1 accuracy (%)", "Phase I", "Phase III",
                    "change");
  auto row = [&](const std::string& name, std::optional<double> a, std::optional<double> b) {
    os << fmt::format("{:<22} {:>8} {:>10} {:>7}\n", name, pct(a), pct(b), delta(a, b));
  };
  row("overall", before.top1, after.top1);
  const auto groups_before = eval::group_accuracies(before);
  const auto groups_after = eval::group_accuracies(after);
  for (size_t g = 0; g < groups_before.size(); ++g) {
    row(eval::group_title(groups_before[g].first), groups_before[g].second, groups_after[g].second);
  }
  os << "per class (training images, head/tail):\n";
  for (int64_t c = 0; c < data.num_classes(); ++c) {
    auto v = [](double x) { return std::isnan(x) ? std::optional<double>() : std::optional(x); };
    const auto name = fmt::format("{:>3} {:<11.11} {:>5} {}", c, data.train.class_names[c],
                                  data.class_counts[c], data.head[c] ? "H" : "T");
    row(name, v(before.per_class[c]), v(after.per_class[c]));
  }
  return os.str();
}

PhaseResult run_test(const io::Config& cfg, Workspace& ws, const std::string& checkpoint,
                     const std::string& out_dir) {
  detail::prepare_out_dir(out_dir, cfg, ws.data);
  auto model = detail::build_model(cfg, ws);
  load_checkpoint(checkpoint, *model, nullptr);
  PhaseResult r;
  r.report = evaluate(*model, ws.data.test, ws.data, ws.device, cfg.test.batch_size,
                      cfg.bf16_mixed(), cfg.test.logit_adjust_tau);
  if (!std::isfinite(r.report.loss)) {
    throw TrainingError(
        fmt::format("checkpoint '{}' gives a test loss of {}: its weights have "
                    "diverged, so its accuracy means nothing",
                    checkpoint, r.report.loss));
  }
  r.metrics = {{"test", report_json(r.report, ws.data.class_counts)}, {"checkpoint", checkpoint}};
  if (cfg.test.logit_adjust_tau != 0) {
    r.metrics["test"]["logit_adjust_tau"] = cfg.test.logit_adjust_tau;
  }
  detail::write_json((fs::path(out_dir) / "metrics.json").string(), r.metrics);
  detail::write_report_safely(out_dir);
  spdlog::info("test: top-1 {:.2f}% on {} images", 100 * r.report.top1, ws.data.test.size());
  return r;
}

}  // namespace fsa::train
