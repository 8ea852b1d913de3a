#include "fsa/train/engine.h"

#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <torch/nn/utils/clip_grad.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>

#include "fsa/train/schedule.h"
#include "internal.h"

namespace fsa::train {

namespace {

std::atomic<int> g_interrupt{0};

extern "C" void on_interrupt(int signal_number) {
  int expected = 0;
  if (!g_interrupt.compare_exchange_strong(expected, signal_number)) {
    _exit(128 + signal_number);  // the second signal: at once
  }
}

}  // namespace

void install_interrupt_handlers() {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int interrupt_signal() { return g_interrupt.load(); }

void throw_if_interrupted(const std::string& where, const std::string& kept) {
  const int s = interrupt_signal();
  if (s == 0) return;
  throw Interrupted(s, fmt::format("stopped by {} during {}; {}",
                                   s == SIGINT ? "SIGINT (Ctrl-C)" : "SIGTERM", where, kept));
}

const char* split_name(Split split) { return split == Split::kTest ? "test" : "validation"; }

bool is_evaluated_epoch(int64_t epoch, int64_t num_epochs, int64_t interval) {
  const int64_t done = epoch + 1;
  return done == num_epochs || done % interval == 0;
}

FitResult fit(const TrainingLoop& loop, TrainingMethod& method) {
  const auto& cfg = *loop.cfg;
  auto& optimizer = *loop.optimizer;
  detail::EpochKeeper keeper(loop.phase, cfg, loop.out_dir, *loop.model, optimizer, loop.validation,
                             loop.data);
  int64_t start_epoch = 0;
  if (loop.resumed) {
    keeper.restore(*loop.resumed);
    start_epoch = loop.resumed->epoch;
  }
  const int64_t epochs = cfg.train.num_epoch;
  const int64_t batches = method.batches_per_epoch();
  FitResult result;
  for (int64_t epoch = start_epoch; epoch < epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = lr_at_epoch(cfg.train.lr_scheduler, cfg.train.optimizer.lr, epoch);
    set_learning_rate(optimizer, lr);
    method.start_epoch(epoch, detail::epoch_generator(loop.seed, loop.generator_stream, epoch));
    detail::RunningStats stats(loop.model->parameters().front().device(), loop.phase, epoch + 1);
    auto progress = detail::make_progress(
        cfg, fmt::format("{} epoch {}/{}", loop.phase, epoch + 1, epochs), batches);
    int64_t b = 0;
    // What a stop leaves on disk: the last finished epoch's checkpoint.
    const auto kept = epoch > 0 ? fmt::format("'{}' holds epoch {}: continue with --resume {}",
                                              keeper.last_path(), epoch, keeper.last_path())
                                : std::string(
                                      "no epoch had finished, so there is nothing to "
                                      "resume");
    while (auto step = method.next_step()) {
      ++b;
      optimizer.zero_grad();
      step->loss.backward();
      if (cfg.train.gradient_clip) {
        torch::nn::utils::clip_grad_norm_(loop.trained, *cfg.train.gradient_clip);
      }
      optimizer.step();
      stats.add(step->loss, step->logits, step->labels, b);
      throw_if_interrupted(fmt::format("{} epoch {}", loop.phase, epoch + 1), kept);
      progress->update(b, step->images, {{"loss", stats.mean_loss()}, {"acc", stats.accuracy()}});
      if (b % cfg.log.log_interval == 0) {
        spdlog::debug("{} epoch {} batch {}/{}: running loss {:.4f}", loop.phase, epoch + 1, b,
                      batches, stats.mean_loss());
      }
    }
    stats.sync(b);
    progress->finish();
    method.finish_epoch();
    std::optional<eval::Report> report, val;
    if (is_evaluated_epoch(epoch, epochs, cfg.test.interval)) {
      try {
        report = method.evaluate(Split::kTest);
        if (loop.validation) val = method.evaluate(Split::kValidation);
      } catch (const Interrupted& e) {  // say what the run keeps
        throw Interrupted(e.signal, fmt::format("{}; {}", e.what(), kept));
      }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    keeper.end_epoch(epoch, lr, stats.mean_loss(), stats.accuracy(), report ? &*report : nullptr,
                     val ? &*val : nullptr, secs);
    if (report) result.last = std::move(*report);
  }
  if (start_epoch >= epochs) {
    // A finished run resumed: nothing to train; its outputs are completed
    // from the final weights (a kill after the last checkpoint but before
    // metrics.json leaves such a run).
    result.last = method.evaluate(Split::kTest);
  }
  result.best_epoch = keeper.best_epoch();
  result.history = keeper.history();
  result.selected_on = split_name(loop.validation ? Split::kValidation : Split::kTest);
  result.best_top1 = keeper.best_acc1();
  if (loop.validation) {
    result.best_val_top1 = keeper.best_acc1();
    for (const auto& entry : result.history) {  // the best epoch's test figure
      if (entry.value("epoch", int64_t(-1)) == result.best_epoch && entry.contains("test_acc")) {
        result.best_top1 = entry["test_acc"].get<double>();
      }
    }
  }
  result.last_checkpoint = keeper.last_path();
  result.best_checkpoint = keeper.best_path();
  if (start_epoch >= epochs) {  // nothing written here: the resumed file is the last
    result.last_checkpoint = cfg.checkpoint.resume;
    if (!std::filesystem::exists(result.best_checkpoint)) result.best_checkpoint.clear();
  }
  return result;
}

}  // namespace fsa::train
