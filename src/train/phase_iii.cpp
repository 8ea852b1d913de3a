// Phase III: fine-tuning the classifier head with feature-space augmentation
// (METHOD.md). Online: feature maps and CAMs recomputed every batch with the
// current head; offline: sampled from Phase II's store.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/nn/functional/loss.h>
#include <torch/serialize.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <random>
#include <sstream>

#include "fsa/augment/fusion.h"
#include "fsa/cam/cam.h"
#include "fsa/data/inputs.h"
#include "fsa/data/loader.h"
#include "fsa/dist/dist.h"
#include "fsa/io/files.h"
#include "fsa/io/torch_file.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/engine.h"
#include "fsa/train/fsa_batch.h"
#include "fsa/train/loss.h"
#include "fsa/train/phases.h"
#include "fsa/train/precision.h"
#include "fsa/train/schedule.h"
#include "internal.h"

namespace fs = std::filesystem;

namespace fsa::train {
namespace {

FeatureStore load_store(const std::string& path, const data::Fingerprint& expected,
                        const std::string& cam_layer) {
  if (!fs::exists(path)) {
    throw CheckpointError(
        fmt::format("offline fine-tuning needs the feature store '{}'; run "
                    "Phase II with feature.store: true",
                    path));
  }
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  data::Fingerprint stored;
  try {
    d = io::with_doubles(io::read_torch_file(path)).toGenericDict();
    detail::check_seal(d, path, "feature store");
    stored = detail::fingerprint_from(d.at("fingerprint").toGenericDict());
    d.at("cam_layer").toStringRef();
    d.at("features").toTensor();
    d.at("cams").toTensor();
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    throw CheckpointError(
        fmt::format("feature store '{}' is not a readable features.pt (written "
                    "by `fsa extract --store`): {}",
                    path, detail::short_message(e)));
  }
  const auto diff = stored.differences(expected);
  if (!diff.empty()) {
    throw CheckpointError(
        fmt::format("feature store '{}' was made from another training set "
                    "(stored vs now: {})",
                    path, diff));
  }
  if (d.at("cam_layer").toStringRef() != cam_layer) {
    throw CheckpointError(fmt::format("feature store '{}' holds maps at {}, the config asks for {}",
                                      path, d.at("cam_layer").toStringRef(), cam_layer));
  }
  return {d.at("features").toTensor(), d.at("cams").toTensor()};
}

std::vector<int64_t> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

/// Loads checkpoint.resume (head, optimiser state) into `model`, which holds
/// the Phase I network of `checkpoint`. Phase III trains only h, so the
/// resumed f must equal that network's f; then the feature maps are the same
/// as in the interrupted run, and each epoch's draws depend on the seed and
/// epoch alone. Throws CheckpointError naming both files otherwise.
CheckpointInfo resume_head(const io::Config& cfg, models::Backbone& model,
                           torch::optim::Optimizer& optimizer, const std::string& layer,
                           const std::string& checkpoint) {
  const auto head_params = model.head_parameters(layer);
  auto is_head = [&](const torch::Tensor& p) {
    return std::any_of(head_params.begin(), head_params.end(),
                       [&](const torch::Tensor& h) { return h.is_same(p); });
  };
  std::vector<torch::Tensor> f_before;
  for (const auto& p : model.parameters()) {
    if (!is_head(p)) f_before.push_back(p.detach().clone());
  }
  const auto info = load_checkpoint(cfg.checkpoint.resume, model, &optimizer);
  size_t i = 0;
  for (const auto& p : model.parameters()) {
    if (is_head(p)) continue;
    if (!torch::equal(p.detach(), f_before[i++])) {
      throw CheckpointError(fmt::format(
          "checkpoint.resume '{}' was fine-tuned from another Phase I network than '{}'; "
          "resume with the --checkpoint the run started from",
          cfg.checkpoint.resume, checkpoint));
    }
  }
  return info;
}

/// The classifier head on balanced batches of real and fused feature maps.
class FineTuneHead : public TrainingMethod {
 public:
  FineTuneHead(const io::Config& cfg, Workspace& ws, models::Backbone& model,
               const GroupSampler& sampler, const FsaBatchBuilder& builder,
               const detail::SplitFeatures& eval_maps)
      : cfg_(cfg),
        ws_(ws),
        model_(model),
        sampler_(sampler),
        builder_(builder),
        eval_maps_(eval_maps),
        groups_per_batch_(cfg.train.batch_size / (2 * (1 + cfg.finetune.Na))),
        criterion_(cfg.train.loss, ws.data.class_counts, ws.device) {}

  int64_t batches_per_epoch() const override {
    const auto tail = int64_t(sampler_.tail().size());
    return (tail + groups_per_batch_ - 1) / groups_per_batch_;
  }

  void start_epoch(int64_t epoch, at::Generator gen) override {
    epoch_ = epoch;
    gen_ = std::move(gen);
    rng_.seed(torch::randint(0, int64_t(1) << 62, {1}, gen_, torch::kInt64).item<int64_t>());
    order_ = sampler_.tail();
    std::shuffle(order_.begin(), order_.end(), rng_);
    next_ = 0;
    model_.set_finetune_mode(cfg_.feature.cam_layer);
  }

  // Beyond the epoch generator: the group sampler's engine (its state as
  // the standard library writes it); the step count gives next_.
  std::optional<std::string> position() const override {
    std::ostringstream os;
    os << rng_;
    return os.str();
  }

  void seek(int64_t steps, const std::string& state) override {
    std::istringstream is(state);
    is >> rng_;
    if (!is) throw std::invalid_argument("the group sampler's state is not a std::mt19937_64");
    next_ = std::min(int64_t(order_.size()), steps * groups_per_batch_);
  }

  std::optional<TrainingStep> next_step() override {
    if (next_ >= int64_t(order_.size())) return std::nullopt;
    const auto len = std::min<int64_t>(groups_per_batch_, int64_t(order_.size()) - next_);
    std::vector<int64_t> tail_batch(order_.begin() + next_, order_.begin() + next_ + len);
    next_ += len;
    // Data-parallel: this rank's share of the groups, from the draws of the
    // whole batch (a batch of fewer groups than ranks runs whole on each).
    auto& group = dist::world();
    std::optional<std::pair<int64_t, int64_t>> share;
    if (group.size() > 1 && len >= group.size()) {
      share = data::batch_share(len, group.rank(), group.size());
    }
    const auto batch = builder_.build(sampler_.draw(tail_batch, rng_), gen_, true, share);
    TrainingStep step;
    {
      AutocastGuard autocast(ws_.device, cfg_.bf16_mixed());
      step.logits = model_.head(batch.maps, cfg_.feature.cam_layer).to(torch::kFloat32);
    }
    step.labels = batch.labels;
    step.loss = criterion_(step.logits, step.labels, epoch_);
    step.images = batch.tail_images;
    step.global_images = share ? len : 0;  // every group holds 2(1 + Na) maps
    return step;
  }

  eval::Report evaluate(Split split) override {
    model_.eval();
    return detail::evaluate_head(model_, eval_maps_.of(split),
                                 detail::split_images(ws_.data, split).labels, ws_,
                                 cfg_.feature.cam_layer, cfg_.test.batch_size, cfg_.bf16_mixed(),
                                 cfg_.test.logit_adjust_tau);
  }

 private:
  const io::Config& cfg_;
  Workspace& ws_;
  models::Backbone& model_;
  const GroupSampler& sampler_;
  const FsaBatchBuilder& builder_;
  const detail::SplitFeatures& eval_maps_;
  int64_t groups_per_batch_;
  Criterion criterion_;
  int64_t epoch_ = 0;
  at::Generator gen_;
  std::mt19937_64 rng_;
  std::vector<int64_t> order_;
  int64_t next_ = 0;
};

}  // namespace

void validate_phase_iii(const io::Config& cfg) {
  if (cfg.train.sampler.name != "instance_balanced") {
    throw io::ConfigError(fmt::format(
        "config {}: key 'train.sampler': Phase III draws its own balanced groups (METHOD.md), so "
        "a sampler ({}) would be ignored; set train.sampler under phase_i only",
        cfg.source, cfg.train.sampler.name));
  }
  const int64_t group = 2 * (1 + cfg.finetune.Na);
  if (cfg.train.batch_size < group) {
    throw io::ConfigError(fmt::format(
        "config {}: key 'train.batch_size': expected at least one group of 2*(1+Na) = {} feature "
        "maps, got {}",
        cfg.source, group, cfg.train.batch_size));
  }
}

Analysis load_matching_analysis(const std::string& path, const Workspace& ws) {
  auto analysis = load_analysis(path);
  const auto diff = analysis.fingerprint.differences(ws.data.fingerprint);
  if (!diff.empty()) {
    throw CheckpointError(
        fmt::format("Phase II analysis '{}' was made from another training set "
                    "than this config describes (analysis vs now: {}); rerun "
                    "Phase II with this config",
                    path, diff));
  }
  // The file's own structure: a damaged or hand-edited analysis must stop
  // here, not index past a class's image list.
  const int64_t classes = ws.data.num_classes();
  const auto& k = analysis.confusing;
  const int64_t most = std::max<int64_t>(classes - 1, 1);
  if (k.dim() != 2 || k.size(0) != classes || k.size(1) < 1 || k.size(1) > most ||
      k.scalar_type() != torch::kInt64) {
    throw CheckpointError(
        fmt::format("Phase II analysis '{}' is malformed: its confusing-class "
                    "table is {} {}, expected int64 [{}, K] with 1 ≤ K ≤ {}",
                    path, c10::toString(k.scalar_type()), c10::str(k.sizes()), classes, most));
  }
  const int64_t kept = k.size(1);
  const auto table = k.cpu().contiguous();
  const auto* v = table.data_ptr<int64_t>();
  for (int64_t t = 0; t < classes; ++t) {
    if (ws.data.head[size_t(t)]) continue;  // Phase III reads the tail classes' rows
    for (int64_t i = 0; i < kept; ++i) {
      const auto c = v[t * kept + i];
      if (c == -1) continue;  // padding
      if (c < 0 || c >= classes || c == t) {
        throw CheckpointError(fmt::format(
            "Phase II analysis '{}' is corrupt: confusing class {} of class {} is not another "
            "class of the {} (expected 0..{} except {}, or -1)",
            path, c, t, classes, classes - 1, t));
      }
      if (analysis.confusing_from == "head" && !ws.data.head[size_t(c)]) {
        throw CheckpointError(fmt::format(
            "Phase II analysis '{}' lists class {} as confusing for tail class {}, but class {} "
            "is a tail class under this config's head/tail split (finetune.head_ratio, "
            "finetune.head_classes); rerun Phase II with this config",
            path, c, t, c));
      }
    }
  }
  return analysis;
}

PhaseResult run_phase_iii(const io::Config& cfg, Workspace& ws, const std::string& checkpoint,
                          const std::string& analysis_path, const std::string& out_dir) {
  validate_phase_iii(cfg);
  detail::check_resume(cfg, ws, "phase_iii", cfg.feature.cam_layer);
  const auto& ft = cfg.finetune;
  const int64_t group = 2 * (1 + ft.Na);
  const auto analysis = load_matching_analysis(analysis_path, ws);
  const auto& layer = cfg.feature.cam_layer;
  if (analysis.cam_layer != layer && ft.offline) {
    throw io::ConfigError(fmt::format("feature.cam_layers is {}, the offline store holds {}", layer,
                                      analysis.cam_layer));
  }
  detail::prepare_out_dir(out_dir, cfg, ws.data);
  auto model = detail::build_model(cfg, ws);
  const auto start = load_checkpoint(checkpoint, *model, nullptr);
  if (analysis.checkpoint_checksum != 0 && analysis.checkpoint_checksum != start.checksum) {
    throw CheckpointError(fmt::format(
        "Phase II analysis '{}' was made from another Phase I network ('{}' when it was "
        "written, checksum {:08x}) than '{}' (checksum {:08x}); its confusing classes belong to "
        "that network: rerun `fsa extract --checkpoint {}`",
        analysis_path, analysis.checkpoint, analysis.checkpoint_checksum, checkpoint,
        start.checksum, checkpoint));
  }
  if (analysis.checkpoint_checksum == 0) {
    spdlog::warn(
        "phase_iii: Phase II analysis '{}' (of an older fsa) does not record which "
        "Phase I network it was made from; make sure it was '{}'",
        analysis_path, checkpoint);
  }
  auto optimizer = make_optimizer(cfg.train.optimizer, model->head_parameters(layer));
  TrainingLoop loop(cfg, "phase_iii", /*stream=*/3, ws.seed, out_dir, *model, *optimizer,
                    model->head_parameters(layer));
  loop.validation = ws.data.val.size() > 0;
  loop.data = &ws.data;
  if (!cfg.checkpoint.resume.empty()) {
    loop.resumed = resume_head(cfg, *model, *optimizer, layer, checkpoint);
    spdlog::info("phase_iii: resuming from '{}' after epoch {}", cfg.checkpoint.resume,
                 loop.resumed->epoch);
  }

  const auto labels = to_vector(ws.data.train.labels);
  std::vector<std::vector<int64_t>> confusing(ws.data.head.size());
  for (size_t t = 0; t < ws.data.head.size(); ++t) {
    if (!ws.data.head[t]) confusing[t] = confusing_classes(analysis, int64_t(t), ft.Nf);
  }
  GroupSampler sampler(labels, ws.data.head, confusing, ft.Na);
  FeatureStore store;
  if (ft.offline) {
    store = load_store((fs::path(analysis_path).parent_path() / "features.pt").string(),
                       ws.data.fingerprint, layer);
  }
  FsaBatchBuilder builder(*model, ws.data, ws.device, layer, ft, cfg.bf16_mixed(),
                          ft.offline ? &store : nullptr);
  const auto eval_maps =
      detail::evaluation_features(*model, ws, layer, cfg.test.batch_size, cfg.bf16_mixed());
  if (eval_maps.test.size(2) * eval_maps.test.size(3) == 1) {
    spdlog::warn(
        "phase_iii: the feature maps at {} are 1x1, so every class activation map is "
        "flat and no fused map has a class-specific region: FSA cannot work there; "
        "choose an earlier feature.cam_layers or larger images",
        layer);
  }
  FineTuneHead method(cfg, ws, *model, sampler, builder, eval_maps);
  spdlog::info(
      "phase_iii ({}): {} tail images, {} groups of {} maps per batch, {} batches per "
      "epoch, from '{}' (Phase I epoch {}), loss {}",
      ft.offline ? "offline" : "online", sampler.tail().size(), cfg.train.batch_size / group, group,
      method.batches_per_epoch(), checkpoint, start.epoch,
      Criterion(cfg.train.loss, ws.data.class_counts, ws.device).describe());
  const auto fitted = fit(loop, method);

  auto result = detail::phase_result(fitted, cfg, ws);
  result.metrics["mode"] = ft.offline ? "offline" : "online";
  detail::write_json((fs::path(out_dir) / "metrics.json").string(),
                     nlohmann::json{{"phase_iii", result.metrics}});
  detail::write_report_safely(out_dir);
  return result;
}

}  // namespace fsa::train
