#include "fsa/train/decouple.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/nn/functional/linear.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>

#include "fsa/data/inputs.h"
#include "fsa/dist/dist.h"
#include "fsa/io/files.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/engine.h"
#include "fsa/train/loss.h"
#include "fsa/train/precision.h"
#include "fsa/train/schedule.h"
#include "internal.h"

namespace fs = std::filesystem;

namespace fsa::train {
namespace {

/// cRT and LWS: sampled, augmented training batches through the frozen
/// feature extractor; only the classifier (cRT) or the class scales (LWS) learn.
class ClassifierRetraining : public TrainingMethod {
 public:
  ClassifierRetraining(const io::Config& cfg, Workspace& ws, models::Backbone& model,
                       const detail::SplitFeatures& eval_maps)
      : cfg_(cfg),
        ws_(ws),
        model_(model),
        layer_(model.stage_names().back()),
        eval_maps_(eval_maps),
        input_(ws.data, cfg.train.batch_size, ws.seed, ws.device, cfg.train.sampler.name,
               cfg.train.num_epoch),
        criterion_(cfg.train.loss, ws.data.class_counts, ws.device) {
    if (cfg.decoupling.method == "lws") {
      auto& fc = model.classifier();
      base_weight_ = fc->weight.detach().clone();
      if (fc->bias.defined()) base_bias_ = fc->bias.detach().clone();
      scales_ = torch::ones({model.num_classes()}, base_weight_.options()).requires_grad_(true);
    }
  }

  /// What the optimiser trains.
  std::vector<torch::Tensor> trained() {
    if (scales_.defined()) return {scales_};
    return model_.classifier()->parameters();
  }

  int64_t batches_per_epoch() const override { return input_.batches_per_epoch(); }

  void start_epoch(int64_t epoch, at::Generator gen) override {
    epoch_ = epoch;
    input_.start_epoch(epoch, std::move(gen));
    model_.eval();  // batch norm keeps the Phase I statistics
  }

  // The epoch generator and the step count say where the epoch stands; LWS
  // keeps its class scales outside the network (and the checkpoint), so it
  // continues from epoch ends only.
  std::optional<std::string> position() const override {
    if (scales_.defined()) return std::nullopt;
    return std::string();
  }
  void seek(int64_t steps, const std::string&) override { input_.skip(steps); }

  std::optional<TrainingStep> next_step() override {
    auto batch = input_.next();
    if (!batch) return std::nullopt;
    torch::Tensor maps;
    {
      torch::NoGradGuard no_grad;
      AutocastGuard autocast(ws_.device, cfg_.bf16_mixed());
      maps = model_.features(batch->inputs, layer_).to(torch::kFloat32);
    }
    TrainingStep step;
    if (scales_.defined()) {
      namespace F = torch::nn::functional;
      const auto raw = F::linear(maps.mean({2, 3}), base_weight_, base_bias_);
      step.logits = raw * scales_;
    } else {
      step.logits = model_.head(maps, layer_);
    }
    step.labels = batch->labels;
    step.loss = criterion_(step.logits, step.labels, epoch_);
    step.images = step.labels.size(0);
    return step;
  }

  void finish_epoch() override {
    if (!scales_.defined()) return;
    torch::NoGradGuard no_grad;
    auto& fc = model_.classifier();
    const auto s = scales_.detach();
    fc->weight.copy_(base_weight_ * s.unsqueeze(1));
    if (base_bias_.defined()) fc->bias.copy_(base_bias_ * s);
  }

  eval::Report evaluate(Split split) override {
    return detail::evaluate_head(
        model_, eval_maps_.of(split), detail::split_images(ws_.data, split).labels, ws_, layer_,
        cfg_.test.batch_size, cfg_.bf16_mixed(), cfg_.test.logit_adjust_tau);
  }

 private:
  const io::Config& cfg_;
  Workspace& ws_;
  models::Backbone& model_;
  std::string layer_;
  const detail::SplitFeatures& eval_maps_;
  data::TrainingBatches input_;
  Criterion criterion_;
  int64_t epoch_ = 0;
  torch::Tensor base_weight_, base_bias_, scales_;  // LWS
};

/// Sets the classifier to the τ-normalised `weight` (no bias).
void set_tau_normalized(models::Backbone& model, const torch::Tensor& weight, double tau) {
  torch::NoGradGuard no_grad;
  auto& fc = model.classifier();
  fc->weight.copy_(tau_normalize(weight, tau));
  if (fc->bias.defined()) fc->bias.zero_();
}

}  // namespace

std::vector<double> tau_grid() {
  std::vector<double> grid;
  for (int i = 0; i <= 20; ++i) grid.push_back(i / 10.0);
  return grid;
}

torch::Tensor tau_normalize(const torch::Tensor& weight, double tau) {
  const auto norms = weight.norm(2, /*dim=*/1, /*keepdim=*/true);
  const auto divisor = torch::where(norms > 0, norms.pow(tau), torch::ones_like(norms));
  return weight / divisor;
}

PhaseResult run_decouple(const io::Config& cfg, Workspace& ws, const std::string& checkpoint,
                         const std::string& out_dir) {
  const auto& method_name = cfg.decoupling.method;
  if (!cfg.checkpoint.resume.empty() && method_name != "crt") {
    throw io::ConfigError(fmt::format(
        "config {}: key 'checkpoint.resume': {} does not resume ({}); run it again",
        cfg.source, method_name,
        method_name == "lws" ? "its class scales live outside the checkpointed network"
                             : "it trains nothing"));
  }
  if (method_name == "lws" && cfg.model.classifier == "cosine") {
    throw io::ConfigError(fmt::format("config {}: key 'decoupling.method': lws scales classifier "
                                      "rows, which a cosine classifier normalises again; use crt",
                                      cfg.source));
  }
  if (method_name == "tau_norm" && cfg.model.classifier == "cosine") {
    throw io::ConfigError(
        fmt::format("config {}: key 'decoupling.method': tau_norm rescales "
                    "classifier rows, which a cosine classifier normalises "
                    "anyway; use crt",
                    cfg.source));
  }
  if (method_name == "tau_norm" && cfg.decoupling.tau_search && ws.data.val.size() == 0) {
    throw io::ConfigError(fmt::format(
        "config {}: key 'decoupling.tau': 'search' chooses τ on the validation split, and this "
        "dataset has none; set dataset.val_fraction (or dataset.val_list for a list-file "
        "dataset), or give τ",
        cfg.source));
  }
  const auto info = read_checkpoint_info(checkpoint);
  if (info.phase != "phase_i") {
    throw CheckpointError(fmt::format("checkpoint '{}' is a {} checkpoint; fsa decouple re-learns "
                                      "the classifier of a Phase I network (fsa train's "
                                      "checkpoints)", checkpoint, info.phase));
  }
  if (ws.data.val.size() > 0 && cfg.dataset.val_list.empty()) {
    // The split is held out of training now; was it held out of Phase I's?
    // (The same fraction and seed hold out the same images.)
    double fraction = 0;
    std::optional<uint64_t> seed;
    try {
      const auto recorded = YAML::Load(info.config);
      if (recorded["dataset"]["val_fraction"]) {
        fraction = recorded["dataset"]["val_fraction"].as<double>();
      }
      if (recorded["random_seed"]) seed = recorded["random_seed"].as<uint64_t>();
    } catch (const YAML::Exception&) {
    }
    if (fraction != cfg.dataset.val_fraction || seed != ws.seed) {
      spdlog::warn(
          "decouple: the Phase I network '{}' was trained with dataset.val_fraction {} "
          "(random_seed {}), so on the images now held out for validation "
          "(val_fraction {}, random_seed {}); its validation figures flatter it: train "
          "Phase I with the same val_fraction and seed",
          checkpoint, fraction, seed ? std::to_string(*seed) : "unknown", cfg.dataset.val_fraction,
          ws.seed);
    }
  }
  detail::check_resume(cfg, ws, "decouple", "");
  auto model = detail::build_model(cfg, ws);
  const auto phase_i = load_checkpoint(checkpoint, *model, nullptr);
  detail::prepare_out_dir(out_dir, cfg, ws.data);
  // The Phase I recipe, so that `fsa table` names what the classifier sits on.
  if (dist::is_main()) {
    io::write_file_atomic((fs::path(out_dir) / "phase_i_config.yaml").string(), info.config);
  }
  const auto layer = model->stage_names().back();
  const auto eval_maps =
      detail::evaluation_features(*model, ws, layer, cfg.test.batch_size, cfg.bf16_mixed());
  spdlog::info("decouple ({}): on the frozen Phase I network '{}' (epoch {})", method_name,
               checkpoint, phase_i.epoch);

  PhaseResult result;
  if (method_name == "tau_norm") {
    model->eval();
    const auto phase_i_weight = model->classifier()->weight.detach().clone();
    auto report_on = [&](Split split) {
      return detail::evaluate_head(
          *model, eval_maps.of(split), detail::split_images(ws.data, split).labels, ws, layer,
          cfg.test.batch_size, cfg.bf16_mixed(), cfg.test.logit_adjust_tau);
    };
    double tau = cfg.decoupling.tau;
    if (cfg.decoupling.tau_search) {
      nlohmann::json searched = nlohmann::json::array();
      double best = -1;
      for (const double t : tau_grid()) {
        set_tau_normalized(*model, phase_i_weight, t);
        const auto val = report_on(Split::kValidation);
        searched.push_back({{"tau", t}, {"val_top1", val.top1}});
        if (val.top1 > best) {  // strictly: the smallest τ on ties
          best = val.top1;
          tau = t;
        }
      }
      spdlog::info(
          "decouple (tau_norm): τ = {:g} has the best validation top-1 ({:.2f}%) of "
          "τ = 0, 0.1, ..., 2",
          tau, 100 * best);
      result.metrics["tau_search"] = searched;
      result.metrics["val_top1"] = best;
    }
    set_tau_normalized(*model, phase_i_weight, tau);
    result.report = report_on(Split::kTest);
    CheckpointInfo info;
    info.phase = "decouple";
    info.config = io::to_yaml(detail::resolved(cfg, ws.data));
    info.best_acc1 = result.report.top1;
    info.fingerprint = ws.data.fingerprint;
    info.class_names = ws.data.train.class_names;
    info.preprocessing = ws.data.preprocessing.to_json().dump();
    result.checkpoint = (fs::path(out_dir) / "checkpoints" / "last.pt").string();
    if (dist::is_main()) {
      fs::create_directories(fs::path(result.checkpoint).parent_path());
      save_checkpoint(result.checkpoint, *model, nullptr, info);
    }
    result.metrics.update(report_json(result.report, ws.data.class_counts));
    result.metrics["tau"] = tau;
    result.metrics["tau_selected_on"] = cfg.decoupling.tau_search ? "validation" : "config";
  } else {
    if (method_name == "crt") {
      torch::manual_seed(ws.seed);  // the fresh classifier depends on the seed alone
      model->classifier()->reset_parameters();
      if (model->cosine_classifier()) model->use_cosine_classifier();
    }
    ClassifierRetraining method(cfg, ws, *model, eval_maps);
    auto optimizer = make_optimizer(cfg.train.optimizer, method.trained());
    TrainingLoop loop(cfg, "decouple", /*stream=*/4, ws.seed, out_dir, *model, *optimizer,
                      method.trained());
    loop.validation = ws.data.val.size() > 0;
    loop.data = &ws.data;
    if (!cfg.checkpoint.resume.empty()) {
      // The frozen network and the classifier as the checkpoint holds them.
      loop.resumed = load_checkpoint(cfg.checkpoint.resume, *model, optimizer.get());
      spdlog::info("decouple (crt): resuming from '{}' after epoch {}", cfg.checkpoint.resume,
                   loop.resumed->epoch);
    }
    spdlog::info("decouple ({}): loss {}, sampler {}, {} epochs", method_name,
                 Criterion(cfg.train.loss, ws.data.class_counts, ws.device).describe(),
                 cfg.train.sampler.name, cfg.train.num_epoch);
    const auto fitted = fit(loop, method);
    result = detail::phase_result(fitted, cfg, ws);
  }
  result.metrics["method"] = method_name;
  result.metrics["from_checkpoint"] = checkpoint;
  result.metrics["class_names"] = ws.data.train.class_names;  // tau_norm's too
  detail::write_json((fs::path(out_dir) / "metrics.json").string(),
                     nlohmann::json{{"decouple", result.metrics}});
  detail::write_report_safely(out_dir);
  spdlog::info("decouple ({}): top-1 {:.2f}% (head {}, tail {})", method_name,
               100 * result.report.top1, eval::format_percent(result.report.head),
               eval::format_percent(result.report.tail));
  return result;
}

}  // namespace fsa::train
