#include "fsa/train/engine.h"

#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <torch/nn/utils/clip_grad.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>

#include "fsa/dist/dist.h"
#include "fsa/models/batch_norm.h"
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

void TrainingMethod::seek(int64_t, const std::string&) {
  throw std::logic_error("TrainingMethod::seek called on a method without position()");
}

const char* split_name(Split split) { return split == Split::kTest ? "test" : "validation"; }

namespace {

/// Bytes as lowercase hexadecimal, and back (a generator's state in JSON).
std::string to_hex(const torch::Tensor& bytes) {
  static const char* digits = "0123456789abcdef";
  const auto b = bytes.contiguous();
  const auto* p = b.data_ptr<uint8_t>();
  std::string s;
  s.reserve(2 * b.numel());
  for (int64_t i = 0; i < b.numel(); ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

torch::Tensor from_hex(const std::string& s) {
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw std::invalid_argument("not a hexadecimal digit");
  };
  if (s.size() % 2 != 0) throw std::invalid_argument("an odd number of hexadecimal digits");
  auto out = torch::empty({static_cast<int64_t>(s.size() / 2)}, torch::kUInt8);
  auto* p = out.data_ptr<uint8_t>();
  for (size_t i = 0; i < s.size(); i += 2) p[i / 2] = uint8_t(nibble(s[i]) << 4 | nibble(s[i + 1]));
  return out;
}

/// Where the loop stands within an epoch, for a mid-epoch checkpoint.
std::string epoch_position(const at::Generator& gen, const detail::RunningStats& stats,
                           double seconds, const std::string& method_state) {
  return nlohmann::json{{"generator", to_hex(gen.get_state())},
                        {"running", stats.state()},
                        {"seconds", seconds},
                        {"method", method_state}}
      .dump();
}

}  // namespace

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
  auto& group = dist::world();
  const bool parallel = group.size() > 1;
  // Mid-epoch checkpoints: every save_step_interval steps, for a method
  // that can continue an epoch from one (in one process: the running
  // figures of an epoch are per rank until its end).
  const int64_t step_interval =
      method.position() && !parallel ? cfg.checkpoint.save_step_interval : 0;
  if (cfg.checkpoint.save_step_interval > 0 && step_interval == 0) {
    spdlog::warn(
        "{}: checkpoint.save_step_interval {} is not used: {}, so it writes checkpoints at "
        "epoch ends only",
        loop.phase, cfg.checkpoint.save_step_interval,
        parallel ? "data-parallel training does not yet continue an epoch from a checkpoint"
                 : "this method cannot continue an epoch from a checkpoint");
  }
  const int64_t resumed_step = loop.resumed ? loop.resumed->step : 0;
  if (parallel && resumed_step > 0) {
    throw CheckpointError(fmt::format(
        "checkpoint.resume '{}' was written within epoch {}; data-parallel training resumes "
        "from checkpoints written at epoch ends (resume it in one process, or from an "
        "epoch's last.pt)",
        cfg.checkpoint.resume, start_epoch + 1));
  }
  // Data-parallel: every rank starts from rank 0's weights and batch-norm
  // statistics (DistributedDataParallel's first broadcast); the buffers are
  // broadcast again after every step (its broadcast_buffers).
  std::vector<torch::Tensor> buffers;
  if (parallel) {
    auto state = loop.model->parameters();
    buffers = loop.model->buffers();
    state.insert(state.end(), buffers.begin(), buffers.end());
    dist::broadcast_tensors(state, 0);
  }
  // dist.sync_batchnorm: the BatchNorm layers in training mode share their
  // statistics over the ranks for this fit (torch.nn.SyncBatchNorm).
  const bool sync_bn = parallel && cfg.dist.sync_batchnorm;
  if (sync_bn) {
    const auto layers = models::sync_batchnorm(*loop.model, dist::world_shared());
    spdlog::info(
        "{}: {} BatchNorm layers normalise by the statistics of the global batch "
        "(dist.sync_batchnorm)",
        loop.phase, layers);
  }
  struct Unsync {
    torch::nn::Module* model;
    ~Unsync() {
      if (model != nullptr) models::sync_batchnorm(*model, nullptr);
    }
  } unsync{sync_bn ? loop.model : nullptr};
  if (resumed_step > 0 && !method.position()) {
    throw CheckpointError(fmt::format(
        "checkpoint.resume '{}' was written within epoch {} (after step {}), and {} cannot "
        "continue an epoch; resume from a checkpoint written at an epoch end",
        cfg.checkpoint.resume, start_epoch + 1, resumed_step, loop.phase));
  }
  // The last checkpoint written, for the message of a stop.
  int64_t kept_epoch = start_epoch, kept_step = resumed_step;
  auto kept = [&] {
    if (kept_epoch == 0 && kept_step == 0) {
      return std::string("no epoch had finished, so there is nothing to resume");
    }
    return fmt::format("'{}' holds {}: continue with --resume {}", keeper.last_path(),
                       kept_step > 0
                           ? fmt::format("epoch {} up to step {}", kept_epoch + 1, kept_step)
                           : fmt::format("epoch {}", kept_epoch),
                       keeper.last_path());
  };
  FitResult result;
  for (int64_t epoch = start_epoch; epoch < epochs; ++epoch) {
    auto t0 = std::chrono::steady_clock::now();
    const double lr = lr_at_epoch(cfg.train.lr_scheduler, cfg.train.optimizer.lr, epoch);
    set_learning_rate(optimizer, lr);
    // The method keeps a handle on the same generator: saving or restoring
    // its state here is saving or restoring the method's draws.
    auto gen = detail::epoch_generator(loop.seed, loop.generator_stream, epoch);
    method.start_epoch(epoch, gen);
    detail::RunningStats stats(loop.model->parameters().front().device(), loop.phase, epoch + 1);
    auto progress = detail::make_progress(
        cfg, fmt::format("{} epoch {}/{}", loop.phase, epoch + 1, epochs), batches);
    int64_t b = 0;
    if (epoch == start_epoch && resumed_step > 0) {  // continue the epoch where it stopped
      try {
        const auto at = nlohmann::json::parse(loop.resumed->position);
        gen.set_state(from_hex(at.at("generator").get<std::string>()));
        stats.restore(at.at("running"));
        t0 -= std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::duration<double>(at.at("seconds").get<double>()));
        method.seek(resumed_step, at.at("method").get<std::string>());
      } catch (const std::exception& e) {  // JSON, hex, a generator or the method's state
        throw CheckpointError(fmt::format(
            "checkpoint.resume '{}': its position within epoch {} cannot be read ({}); the "
            "file was damaged or written by another fsa",
            cfg.checkpoint.resume, epoch + 1, e.what()));
      }
      b = resumed_step;
      spdlog::info("{}: continuing epoch {} after step {} of {}", loop.phase, epoch + 1, b,
                   batches);
    }
    while (auto step = method.next_step()) {
      ++b;
      optimizer.zero_grad();
      step->loss.backward();
      if (parallel) {
        // A method that shares batches out says how many images the global
        // batch holds; one that does not computed the whole batch on every
        // rank, and its gradients are averaged as they are.
        const auto global =
            step->global_images > 0 ? step->global_images : step->images * group.size();
        dist::average_gradients(loop.trained, step->images, global);
      }
      if (cfg.train.gradient_clip) {
        torch::nn::utils::clip_grad_norm_(loop.trained, *cfg.train.gradient_clip);
      }
      optimizer.step();
      if (parallel) dist::broadcast_tensors(buffers, 0);
      // A batch every rank computed whole is counted once, on rank 0.
      if (!parallel || step->global_images > 0 || group.rank() == 0) {
        stats.add(step->loss, step->logits, step->labels, b);
      }
      if (step_interval > 0 && b % step_interval == 0 && b < batches) {
        stats.sync(b);  // a diverged loss is caught before it is kept
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        keeper.save_within_epoch(epoch, b, epoch_position(gen, stats, secs, *method.position()));
        kept_epoch = epoch;
        kept_step = b;
      }
      if (interrupt_signal() != 0) {
        throw_if_interrupted(fmt::format("{} epoch {}", loop.phase, epoch + 1), kept());
      }
      progress->update(b, step->images, {{"loss", stats.mean_loss()}, {"acc", stats.accuracy()}});
      if (b % cfg.log.log_interval == 0) {
        spdlog::debug("{} epoch {} batch {}/{}: running loss {:.4f}", loop.phase, epoch + 1, b,
                      batches, stats.mean_loss());
      }
    }
    stats.sync(b);
    stats.combine_ranks();
    progress->finish();
    method.finish_epoch();
    std::optional<eval::Report> report, val;
    if (is_evaluated_epoch(epoch, epochs, cfg.test.interval)) {
      try {
        report = method.evaluate(Split::kTest);
        if (loop.validation) val = method.evaluate(Split::kValidation);
      } catch (const Interrupted& e) {  // say what the run keeps
        throw Interrupted(e.signal, fmt::format("{}; {}", e.what(), kept()));
      }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    keeper.end_epoch(epoch, lr, stats.mean_loss(), stats.accuracy(), report ? &*report : nullptr,
                     val ? &*val : nullptr, secs);
    if (report) result.last = std::move(*report);
    kept_epoch = epoch + 1;
    kept_step = 0;
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
  // Data-parallel: rank 0 has written its checkpoints before any rank goes
  // on (to a phase that reads them).
  group.barrier();
  result.last_checkpoint = keeper.last_path();
  result.best_checkpoint = keeper.best_path();
  if (start_epoch >= epochs) {  // nothing written here: the resumed file is the last
    result.last_checkpoint = cfg.checkpoint.resume;
    if (!std::filesystem::exists(result.best_checkpoint)) result.best_checkpoint.clear();
  }
  return result;
}

}  // namespace fsa::train
