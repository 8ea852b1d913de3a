// Phase I: initial feature learning on the long-tailed set (METHOD.md).
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/utils/clip_grad.h>

#include <chrono>
#include <filesystem>

#include "fsa/data/inputs.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/phases.h"
#include "fsa/train/precision.h"
#include "fsa/train/schedule.h"
#include "internal.h"

namespace fs = std::filesystem;

namespace fsa::train {

PhaseResult run_phase_i(const io::Config& cfg, Workspace& ws, const std::string& out_dir) {
  detail::check_resume(cfg, "phase_i", "");
  detail::prepare_out_dir(out_dir, cfg);
  auto model = detail::build_model(cfg, ws);
  auto optimizer = make_optimizer(cfg.train.optimizer, model->parameters());
  detail::EpochKeeper keeper("phase_i", cfg, out_dir, *model, *optimizer);

  int64_t start_epoch = 0;
  if (!cfg.checkpoint.resume.empty()) {
    const auto info = load_checkpoint(cfg.checkpoint.resume, *model, optimizer.get());
    keeper.restore(info);
    start_epoch = info.epoch;
    spdlog::info("phase_i: resuming from '{}' after epoch {}", cfg.checkpoint.resume, start_epoch);
  } else if (!cfg.checkpoint.load_checkpoint.empty()) {
    load_checkpoint(cfg.checkpoint.load_checkpoint, *model, nullptr);
    spdlog::info("phase_i: starting from the weights in '{}'", cfg.checkpoint.load_checkpoint);
  }

  data::TrainingBatches input(ws.data, cfg.train.batch_size, ws.seed, ws.device);
  const int64_t batches = input.batches_per_epoch();
  for (int64_t epoch = start_epoch; epoch < cfg.train.num_epoch; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = lr_at_epoch(cfg.train.lr_scheduler, cfg.train.optimizer.lr, epoch);
    set_learning_rate(*optimizer, lr);
    input.start_epoch(epoch, detail::epoch_generator(ws.seed, 1, epoch));
    model->train();
    detail::RunningStats stats(ws.device, "phase_i", epoch + 1);
    auto progress = detail::make_progress(
        cfg, fmt::format("phase_i epoch {}/{}", epoch + 1, cfg.train.num_epoch), batches);
    for (int64_t b = 0;; ++b) {
      auto batch = input.next();
      if (!batch) break;
      const auto& x = batch->inputs;
      const auto& y = batch->labels;
      const auto len = y.size(0);
      torch::Tensor logits;
      {
        AutocastGuard autocast(ws.device, cfg.bf16_mixed());
        logits = model->forward(x).to(torch::kFloat32);
      }
      auto loss = torch::nn::functional::cross_entropy(logits, y);
      optimizer->zero_grad();
      loss.backward();
      if (cfg.train.gradient_clip) {
        torch::nn::utils::clip_grad_norm_(model->parameters(), *cfg.train.gradient_clip);
      }
      optimizer->step();
      stats.add(loss, logits, y, b + 1);
      progress->update(b + 1, len, {{"loss", stats.mean_loss()}, {"acc", stats.accuracy()}});
      if ((b + 1) % cfg.log.log_interval == 0) {
        spdlog::debug("phase_i epoch {} batch {}/{}: running loss {:.4f}", epoch + 1, b + 1,
                      batches, stats.mean_loss());
      }
    }
    stats.sync(batches);
    progress->finish();
    auto report = evaluate(*model, ws.data.test, ws.data, ws.device, cfg.test.batch_size,
                           cfg.bf16_mixed());
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    keeper.end_epoch(epoch, lr, stats.mean_loss(), stats.accuracy(), report, secs);
  }

  PhaseResult result;
  result.report = evaluate(*model, ws.data.test, ws.data, ws.device, cfg.test.batch_size,
                           cfg.bf16_mixed());
  result.checkpoint = keeper.last_path();
  result.best_checkpoint = keeper.best_path();
  result.metrics = report_json(result.report, ws.data.class_counts);
  result.metrics["best_top1"] = keeper.best_acc1();
  result.metrics["best_epoch"] = keeper.best_epoch();
  result.metrics["history"] = keeper.history();
  result.metrics["class_names"] = ws.data.train.class_names;
  detail::write_json((fs::path(out_dir) / "metrics.json").string(),
                     nlohmann::json{{"phase_i", result.metrics}});
  detail::write_report_safely(out_dir);
  return result;
}

}  // namespace fsa::train
