// Phase III: fine-tuning the classifier head with feature-space augmentation
// (METHOD.md). Online: feature maps and CAMs recomputed every batch with the
// current head; offline: sampled from Phase II's store.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/serialize.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>

#include "fsa/augment/fusion.h"
#include "fsa/cam/cam.h"
#include "fsa/data/inputs.h"
#include "fsa/io/files.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/phases.h"
#include "fsa/train/precision.h"
#include "fsa/train/schedule.h"
#include "internal.h"

namespace fs = std::filesystem;

namespace fsa::train {
namespace {

/// Feature maps and CAMs of every training image, from features.pt.
struct FeatureStore {
  torch::Tensor features;  // half [N, K, h, w]
  torch::Tensor cams;      // float [N, h, w]
};

FeatureStore load_store(const std::string& path, const data::Fingerprint& expected,
                        const std::string& cam_layer) {
  if (!fs::exists(path)) {
    throw CheckpointError(fmt::format("offline fine-tuning needs the feature store '{}'; run "
                                      "Phase II with feature.store: true", path));
  }
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  data::Fingerprint stored;
  try {
    d = torch::pickle_load(io::read_file(path)).toGenericDict();
    stored = detail::fingerprint_from(d.at("fingerprint").toGenericDict());
    d.at("cam_layer").toStringRef();
    d.at("features").toTensor();
    d.at("cams").toTensor();
  } catch (const std::exception& e) {
    throw CheckpointError(fmt::format("feature store '{}' is not a readable features.pt (written "
                                      "by `fsa extract --store`): {}", path,
                                      detail::short_message(e)));
  }
  const auto diff = stored.differences(expected);
  if (!diff.empty()) {
    throw CheckpointError(fmt::format("feature store '{}' was made from another training set "
                                      "(stored vs now: {})", path, diff));
  }
  if (d.at("cam_layer").toStringRef() != cam_layer) {
    throw CheckpointError(fmt::format("feature store '{}' holds maps at {}, the config asks for {}",
                                      path, d.at("cam_layer").toStringRef(), cam_layer));
  }
  return {d.at("features").toTensor(), d.at("cams").toTensor()};
}

/// Which training images make up one batch of groups.
struct GroupBatch {
  torch::Tensor tail;     // int64 [G]
  torch::Tensor other;    // int64 [G·Na]: confusing-class images
  torch::Tensor head;     // int64 [G·(1+Na)]
};

/// Draws the confusing-class and head images of each group (METHOD.md Phase
/// III): fused map a of tail class t uses its confusing class a mod |conf(t)|.
class GroupSampler {
 public:
  GroupSampler(const std::vector<int64_t>& labels, const std::vector<bool>& head,
               const Analysis& analysis, int64_t na, int64_t nf)
      : na_(na), by_class_(head.size()), confusing_(head.size()) {
    for (size_t i = 0; i < labels.size(); ++i) {
      by_class_[labels[i]].push_back(int64_t(i));
      if (head[labels[i]]) {
        head_.push_back(int64_t(i));
      } else {
        tail_.push_back(int64_t(i));
      }
    }
    if (tail_.empty()) {
      throw io::ConfigError("Phase III: every class is a head class, so there is nothing to "
                            "augment; lower finetune.head_ratio or list finetune.head_classes");
    }
    if (head_.empty()) {
      throw io::ConfigError("Phase III: no head classes; raise finetune.head_ratio");
    }
    for (size_t t = 0; t < head.size(); ++t) {
      if (head[t]) continue;
      confusing_[t] = confusing_classes(analysis, int64_t(t), nf);
      if (confusing_[t].empty()) {
        throw io::ConfigError(fmt::format("Phase III: tail class {} has no confusing class", t));
      }
    }
  }

  const std::vector<int64_t>& tail() const { return tail_; }

  GroupBatch draw(const std::vector<int64_t>& tail_batch, const std::vector<int64_t>& labels,
                  std::mt19937_64& rng) const {
    std::vector<int64_t> other, head;
    for (auto i : tail_batch) {
      const auto& conf = confusing_[labels[i]];
      for (int64_t a = 0; a < na_; ++a) {
        const auto& pool = by_class_[conf[a % conf.size()]];
        other.push_back(pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)]);
      }
      for (int64_t a = 0; a < 1 + na_; ++a) {
        head.push_back(head_[std::uniform_int_distribution<size_t>(0, head_.size() - 1)(rng)]);
      }
    }
    return {torch::tensor(tail_batch, torch::kInt64), torch::tensor(other, torch::kInt64),
            torch::tensor(head, torch::kInt64)};
  }

 private:
  int64_t na_;
  std::vector<std::vector<int64_t>> by_class_;
  std::vector<std::vector<int64_t>> confusing_;
  std::vector<int64_t> head_, tail_;
};

std::vector<int64_t> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

/// Feature maps of the whole test set at the CAM layer, computed once: f is
/// frozen in Phase III, so each epoch's test needs only the head.
/// With `bf16_mixed`, f runs under autocast and the maps are kept as float32.
torch::Tensor test_features(models::Backbone& model, const Workspace& ws,
                            const std::string& layer, int64_t batch, bool bf16_mixed) {
  torch::NoGradGuard no_grad;
  model.eval();
  std::vector<torch::Tensor> out;
  data::SequentialBatches input(ws.data, ws.data.test, batch, ws.device);
  while (auto b = input.next()) {
    AutocastGuard autocast(ws.device, bf16_mixed);
    out.push_back(model.features(b->inputs, layer).to(torch::kFloat32));
  }
  return torch::cat(out, 0);
}

eval::Report evaluate_head(models::Backbone& model, const torch::Tensor& features,
                           const Workspace& ws, const std::string& layer, int64_t batch,
                           bool bf16_mixed) {
  torch::NoGradGuard no_grad;
  eval::AccuracyMeter meter(ws.data.num_classes());
  auto loss_sum =
      torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(ws.device));
  const auto n = features.size(0);
  auto labels = ws.data.test.labels.to(ws.device);
  for (int64_t s = 0; s < n; s += batch) {
    const auto len = std::min(batch, n - s);
    torch::Tensor logits;
    {
      AutocastGuard autocast(ws.device, bf16_mixed);
      logits = model.head(features.narrow(0, s, len), layer).to(torch::kFloat32);
    }
    auto y = labels.narrow(0, s, len);
    loss_sum += torch::nn::functional::cross_entropy(
        logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    meter.update(logits, y);
  }
  return eval::make_report(meter, ws.data.class_counts, ws.data.head,
                           n ? loss_sum.item<double>() / n : 0.0);
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
          "resume with the --checkpoint the run started from", cfg.checkpoint.resume,
          checkpoint));
    }
  }
  return info;
}

}  // namespace

void validate_phase_iii(const io::Config& cfg) {
  const int64_t group = 2 * (1 + cfg.finetune.Na);
  if (cfg.train.batch_size < group) {
    throw io::ConfigError(fmt::format(
        "config {}: key 'train.batch_size': expected at least one group of 2*(1+Na) = {} feature "
        "maps, got {}", cfg.source, group, cfg.train.batch_size));
  }
}

Analysis load_matching_analysis(const std::string& path, const Workspace& ws) {
  auto analysis = load_analysis(path);
  const auto diff = analysis.fingerprint.differences(ws.data.fingerprint);
  if (!diff.empty()) {
    throw CheckpointError(fmt::format("Phase II analysis '{}' was made from another training set "
                                      "than this config describes (analysis vs now: {}); rerun "
                                      "Phase II with this config", path, diff));
  }
  // The file's own structure: a damaged or hand-edited analysis must stop
  // here, not index past a class's image list.
  const int64_t classes = ws.data.num_classes();
  const auto& k = analysis.confusing;
  if (k.dim() != 2 || k.size(0) != classes || k.size(1) != classes - 1 ||
      k.scalar_type() != torch::kInt64) {
    throw CheckpointError(fmt::format("Phase II analysis '{}' is malformed: its confusing-class "
                                      "table is {} {}, expected int64 [{}, {}]", path,
                                      c10::toString(k.scalar_type()), c10::str(k.sizes()),
                                      classes, classes - 1));
  }
  const auto table = k.cpu().contiguous();
  const auto* v = table.data_ptr<int64_t>();
  for (int64_t t = 0; t < classes; ++t) {
    if (ws.data.head[size_t(t)]) continue;  // Phase III reads the tail classes' rows
    for (int64_t i = 0; i < classes - 1; ++i) {
      const auto c = v[t * (classes - 1) + i];
      if (c == -1) continue;  // padding
      if (c < 0 || c >= classes || c == t) {
        throw CheckpointError(fmt::format(
            "Phase II analysis '{}' is corrupt: confusing class {} of class {} is not another "
            "class of the {} (expected 0..{} except {}, or -1)", path, c, t, classes,
            classes - 1, t));
      }
      if (analysis.confusing_from == "head" && !ws.data.head[size_t(c)]) {
        throw CheckpointError(fmt::format(
            "Phase II analysis '{}' lists class {} as confusing for tail class {}, but class {} "
            "is a tail class under this config's head/tail split (finetune.head_ratio, "
            "finetune.head_classes); rerun Phase II with this config", path, c, t, c));
      }
    }
  }
  return analysis;
}

PhaseResult run_phase_iii(const io::Config& cfg, Workspace& ws, const std::string& checkpoint,
                          const std::string& analysis_path, const std::string& out_dir) {
  validate_phase_iii(cfg);
  detail::check_resume(cfg, "phase_iii", cfg.feature.cam_layer);
  const auto& ft = cfg.finetune;
  const int64_t group = 2 * (1 + ft.Na);
  const auto analysis = load_matching_analysis(analysis_path, ws);
  const auto& layer = cfg.feature.cam_layer;
  if (analysis.cam_layer != layer && ft.offline) {
    throw io::ConfigError(fmt::format("feature.cam_layers is {}, the offline store holds {}",
                                      layer, analysis.cam_layer));
  }
  detail::prepare_out_dir(out_dir, cfg);
  auto model = detail::build_model(cfg, ws);
  const auto start = load_checkpoint(checkpoint, *model, nullptr);
  auto optimizer = make_optimizer(cfg.train.optimizer, model->head_parameters(layer));
  detail::EpochKeeper keeper("phase_iii", cfg, out_dir, *model, *optimizer);
  int64_t start_epoch = 0;
  if (!cfg.checkpoint.resume.empty()) {
    const auto info = resume_head(cfg, *model, *optimizer, layer, checkpoint);
    keeper.restore(info);
    start_epoch = info.epoch;
    spdlog::info("phase_iii: resuming from '{}' after epoch {}", cfg.checkpoint.resume,
                 start_epoch);
  }

  const auto labels = to_vector(ws.data.train.labels);
  GroupSampler sampler(labels, ws.data.head, analysis, ft.Na, ft.Nf);
  FeatureStore store;
  if (ft.offline) {
    store = load_store((fs::path(analysis_path).parent_path() / "features.pt").string(),
                       ws.data.fingerprint, layer);
  }
  auto train_labels = ws.data.train.labels.to(ws.device);
  const auto test_maps = test_features(*model, ws, layer, cfg.test.batch_size, cfg.bf16_mixed());
  const int64_t groups_per_batch = cfg.train.batch_size / group;
  const auto& tail = sampler.tail();
  const int64_t batches = (int64_t(tail.size()) + groups_per_batch - 1) / groups_per_batch;
  spdlog::info("phase_iii ({}): {} tail images, {} groups of {} maps per batch, {} batches per "
               "epoch, from '{}' (Phase I epoch {})", ft.offline ? "offline" : "online",
               tail.size(), groups_per_batch, group, batches, checkpoint, start.epoch);

  for (int64_t epoch = start_epoch; epoch < cfg.train.num_epoch; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = lr_at_epoch(cfg.train.lr_scheduler, cfg.train.optimizer.lr, epoch);
    set_learning_rate(*optimizer, lr);
    auto gen = detail::epoch_generator(ws.seed, 3, epoch);
    std::mt19937_64 rng(torch::randint(0, int64_t(1) << 62, {1}, gen, torch::kInt64).item<int64_t>());
    std::vector<int64_t> order = tail;
    std::shuffle(order.begin(), order.end(), rng);
    model->set_finetune_mode(layer);
    detail::RunningStats stats(ws.device, "phase_iii", epoch + 1);
    auto progress = detail::make_progress(
        cfg, fmt::format("phase_iii epoch {}/{}", epoch + 1, cfg.train.num_epoch), batches);
    for (int64_t b = 0; b < batches; ++b) {
      const auto first = b * groups_per_batch;
      const auto len = std::min<int64_t>(groups_per_batch, int64_t(order.size()) - first);
      std::vector<int64_t> tail_batch(order.begin() + first, order.begin() + first + len);
      const auto drawn = sampler.draw(tail_batch, labels, rng);
      const auto n_tail = drawn.tail.size(0), n_other = drawn.other.size(0);
      auto all = torch::cat({drawn.tail, drawn.other, drawn.head}).to(ws.device);
      auto y_all = train_labels.index_select(0, all);
      torch::Tensor maps, cams_t, cams_o;
      if (ft.offline) {
        auto cpu_idx = all.cpu();
        maps = store.features.index_select(0, cpu_idx).to(ws.device, torch::kFloat32);
        auto cams = store.cams.index_select(0, cpu_idx.narrow(0, 0, n_tail + n_other))
                        .to(ws.device);
        cams_t = cams.narrow(0, 0, n_tail);
        cams_o = cams.narrow(0, n_tail, n_other);
      } else {
        torch::NoGradGuard no_grad;
        AutocastGuard autocast(ws.device, cfg.bf16_mixed());
        maps = model->features(data::train_inputs(ws.data, all, gen, ws.device), layer)
                   .to(torch::kFloat32);
      }
      auto a_t = maps.narrow(0, 0, n_tail), a_o = maps.narrow(0, n_tail, n_other),
           a_h = maps.narrow(0, n_tail + n_other, maps.size(0) - n_tail - n_other);
      auto y_t = y_all.narrow(0, 0, n_tail), y_o = y_all.narrow(0, n_tail, n_other),
           y_h = y_all.narrow(0, n_tail + n_other, maps.size(0) - n_tail - n_other);
      if (!ft.offline) {
        cams_t = cam::class_activation_maps(*model, a_t, y_t, layer);
        cams_o = cam::class_activation_maps(*model, a_o, y_o, layer);
      }
      const auto k = maps.size(1), h = maps.size(2), w = maps.size(3);
      auto fused = augment::fuse_feature_maps(
          a_t, cams_t, y_t, a_o.view({n_tail, ft.Na, k, h, w}), cams_o.view({n_tail, ft.Na, h, w}),
          ft.ts, ft.tg, gen);
      auto batch_maps = torch::cat({a_t, fused.maps, a_h});
      auto batch_labels = torch::cat({y_t, fused.labels, y_h});
      torch::Tensor logits;
      {
        AutocastGuard autocast(ws.device, cfg.bf16_mixed());
        logits = model->head(batch_maps, layer).to(torch::kFloat32);
      }
      auto loss = torch::nn::functional::cross_entropy(logits, batch_labels);
      optimizer->zero_grad();
      loss.backward();
      if (cfg.train.gradient_clip) {
        torch::nn::utils::clip_grad_norm_(model->head_parameters(layer), *cfg.train.gradient_clip);
      }
      optimizer->step();
      stats.add(loss, logits, batch_labels, b + 1);
      progress->update(b + 1, n_tail, {{"loss", stats.mean_loss()}, {"acc", stats.accuracy()}});
      if ((b + 1) % cfg.log.log_interval == 0) {
        spdlog::debug("phase_iii epoch {} batch {}/{}: running loss {:.4f}", epoch + 1, b + 1,
                      batches, stats.mean_loss());
      }
    }
    stats.sync(batches);
    progress->finish();
    model->eval();
    auto report = evaluate_head(*model, test_maps, ws, layer, cfg.test.batch_size,
                                  cfg.bf16_mixed());
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    keeper.end_epoch(epoch, lr, stats.mean_loss(), stats.accuracy(), report, secs);
  }

  PhaseResult result;
  model->eval();
  result.report = evaluate_head(*model, test_maps, ws, layer, cfg.test.batch_size,
                                  cfg.bf16_mixed());
  result.checkpoint = keeper.last_path();
  result.best_checkpoint = keeper.best_path();
  result.metrics = report_json(result.report, ws.data.class_counts);
  result.metrics["best_top1"] = keeper.best_acc1();
  result.metrics["best_epoch"] = keeper.best_epoch();
  result.metrics["history"] = keeper.history();
  result.metrics["mode"] = ft.offline ? "offline" : "online";
  result.metrics["class_names"] = ws.data.train.class_names;
  detail::write_json((fs::path(out_dir) / "metrics.json").string(),
                     nlohmann::json{{"phase_iii", result.metrics}});
  detail::write_report_safely(out_dir);
  return result;
}

}  // namespace fsa::train
