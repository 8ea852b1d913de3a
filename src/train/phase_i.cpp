// Phase I: initial feature learning on the long-tailed set (METHOD.md), with
// the configured loss (train/loss.h) and sampler (data/sampler.h).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <filesystem>

#include "fsa/data/inputs.h"
#include "fsa/dist/dist.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/engine.h"
#include "fsa/train/loss.h"
#include "fsa/train/phases.h"
#include "fsa/train/precision.h"
#include "fsa/train/pretrained.h"
#include "fsa/train/schedule.h"
#include "internal.h"

namespace fs = std::filesystem;

namespace fsa::train {
namespace {

/// The whole network on sampled, augmented batches of the training set.
class WholeNetwork : public TrainingMethod {
 public:
  WholeNetwork(const io::Config& cfg, Workspace& ws, models::Backbone& model)
      : cfg_(cfg),
        ws_(ws),
        model_(model),
        input_(ws.data, cfg.train.batch_size, ws.seed, ws.device, cfg.train.sampler.name,
               cfg.train.num_epoch, dist::world().rank(), dist::world().size()),
        criterion_(cfg.train.loss, ws.data.class_counts, ws.device) {}

  int64_t batches_per_epoch() const override { return input_.batches_per_epoch(); }

  void start_epoch(int64_t epoch, at::Generator gen) override {
    epoch_ = epoch;
    input_.start_epoch(epoch, std::move(gen));
    model_.train();
  }

  // The epoch generator and the step count say where the epoch stands.
  std::optional<std::string> position() const override { return std::string(); }
  void seek(int64_t steps, const std::string&) override { input_.skip(steps); }

  std::optional<TrainingStep> next_step() override {
    auto batch = input_.next();
    if (!batch) return std::nullopt;
    TrainingStep step;
    {
      AutocastGuard autocast(ws_.device, cfg_.bf16_mixed());
      step.logits = model_.forward(batch->inputs).to(torch::kFloat32);
    }
    step.labels = batch->labels;
    step.loss = criterion_(step.logits, step.labels, epoch_);
    step.images = step.labels.size(0);
    step.global_images = batch->global_size;
    return step;
  }

  eval::Report evaluate(Split split) override {
    return train::evaluate(model_, detail::split_images(ws_.data, split), ws_.data, ws_.device,
                           cfg_.test.batch_size, cfg_.bf16_mixed(), cfg_.test.logit_adjust_tau);
  }

  const Criterion& criterion() const { return criterion_; }

 private:
  const io::Config& cfg_;
  Workspace& ws_;
  models::Backbone& model_;
  data::TrainingBatches input_;
  Criterion criterion_;
  int64_t epoch_ = 0;
};

}  // namespace

PhaseResult run_phase_i(const io::Config& cfg, Workspace& ws, const std::string& out_dir) {
  detail::check_resume(cfg, ws, "phase_i", "");
  auto model = detail::build_model(cfg, ws);
  // The loss and sampler are checked against the data before anything is written.
  WholeNetwork method(cfg, ws, *model);
  if (!cfg.model.pretrained.empty() && cfg.checkpoint.resume.empty() &&
      cfg.checkpoint.load_checkpoint.empty()) {  // before the run folder: a bad file writes nothing
    const auto p = load_pretrained(cfg.model.pretrained, *model);
    spdlog::info("phase_i: starting from the weights in '{}' (model.pretrained): {} tensors{}{}",
                 cfg.model.pretrained, p.loaded,
                 p.reinitialised.empty()
                     ? std::string()
                     : fmt::format("; classifier {} initialised afresh ({})",
                                   fmt::join(p.reinitialised, ", "),
                                   model->cosine_classifier()
                                       ? "model.classifier is cosine"
                                       : fmt::format("{} classes here", model->num_classes())),
                 p.duplicates > 0 ? fmt::format("; {} duplicate names skipped", p.duplicates)
                                  : std::string());
  }
  detail::prepare_out_dir(out_dir, cfg, ws.data);
  auto optimizer = make_optimizer(cfg.train.optimizer, model->parameters());

  TrainingLoop loop(cfg, "phase_i", /*stream=*/1, ws.seed, out_dir, *model, *optimizer,
                    model->parameters());
  loop.validation = ws.data.val.size() > 0;
  loop.data = &ws.data;
  if (!cfg.checkpoint.resume.empty()) {
    loop.resumed = load_checkpoint(cfg.checkpoint.resume, *model, optimizer.get());
    spdlog::info("phase_i: resuming from '{}' after epoch {}", cfg.checkpoint.resume,
                 loop.resumed->epoch);
  } else if (!cfg.checkpoint.load_checkpoint.empty()) {
    load_checkpoint(cfg.checkpoint.load_checkpoint, *model, nullptr);
    spdlog::info("phase_i: starting from the weights in '{}'", cfg.checkpoint.load_checkpoint);
  }
  spdlog::info("phase_i: loss {}, sampler {}{}", method.criterion().describe(),
               cfg.train.sampler.name,
               cfg.test.logit_adjust_tau != 0
                   ? fmt::format(", test logits adjusted by τ = {}", cfg.test.logit_adjust_tau)
                   : std::string());

  if (cfg.train.loss.name == "ldam" && cfg.model.classifier != "cosine") {
    spdlog::warn(
        "phase_i: LDAM scales the logits by {}; Cao et al. train it on a cosine "
        "classifier (model.classifier: cosine), whose logits lie in [-1, 1]",
        cfg.train.loss.scale);
  }
  const auto fitted = fit(loop, method);
  auto result = detail::phase_result(fitted, cfg, ws);
  detail::write_json((fs::path(out_dir) / "metrics.json").string(),
                     nlohmann::json{{"phase_i", result.metrics}});
  detail::write_report_safely(out_dir);
  return result;
}

}  // namespace fsa::train
