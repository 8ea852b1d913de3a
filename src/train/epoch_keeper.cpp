#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>

#include "fsa/dist/dist.h"
#include "internal.h"

namespace fs = std::filesystem;

namespace fsa::train::detail {

EpochKeeper::EpochKeeper(std::string phase, const io::Config& cfg, std::string out_dir,
                         models::Backbone& model, torch::optim::Optimizer& optimizer,
                         bool validation, const data::LongTailDataset* data)
    : phase_(std::move(phase)),
      cfg_(cfg),
      out_dir_(std::move(out_dir)),
      model_(model),
      optimizer_(optimizer),
      // Data-parallel: rank 0 writes the event file and the checkpoints.
      events_(dist::is_main() ? std::make_unique<io::EventWriter>(out_dir_) : nullptr),
      validation_(validation),
      data_(data) {}

std::string EpochKeeper::last_path() const {
  return (fs::path(out_dir_) / "checkpoints" / "last.pt").string();
}

std::string EpochKeeper::best_path() const {
  return (fs::path(out_dir_) / "checkpoints" / "best.pt").string();
}

void EpochKeeper::restore(const CheckpointInfo& info) {
  best_acc1_ = info.best_acc1;
  best_epoch_ = info.best_epoch;
  if (info.history.empty()) return;
  try {
    history_ = nlohmann::json::parse(info.history);
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(
        fmt::format("{}: the resumed checkpoint's history (epoch {}) is not "
                    "valid JSON ({}); the file was damaged",
                    phase_, info.epoch, e.what()));
  }
}

CheckpointInfo EpochKeeper::checkpoint_info(int64_t done) const {
  CheckpointInfo info;
  info.phase = phase_;
  info.epoch = done;
  info.best_acc1 = best_acc1_;
  info.best_epoch = best_epoch_;
  info.cam_layer = cfg_.feature.cam_layer;
  info.config = io::to_yaml(data_ ? resolved(cfg_, *data_) : cfg_);
  info.history = history_.dump();
  if (data_) {
    info.fingerprint = data_->fingerprint;
    info.class_names = data_->train.class_names;
    info.preprocessing = data_->preprocessing.to_json().dump();
  }
  return info;
}

void EpochKeeper::save_within_epoch(int64_t epoch, int64_t step, const std::string& position) {
  auto info = checkpoint_info(epoch);
  info.step = step;
  info.position = position;
  if (dist::is_main()) save_checkpoint(last_path(), model_, &optimizer_, info);
}

void EpochKeeper::end_epoch(int64_t epoch, double lr, double train_loss, double train_acc,
                            const eval::Report* test, const eval::Report* val, double seconds) {
  const int64_t done = epoch + 1;
  using Evaluated = std::pair<const eval::Report*, const char*>;
  for (const auto& [report, split] : {Evaluated{test, "test"}, Evaluated{val, "validation"}}) {
    if (report && !std::isfinite(report->loss)) {  // before anything of this epoch is kept
      throw TrainingError(fmt::format(
          "{} epoch {}: the {} loss is {}: the weights have diverged (lower the learning rate "
          "or set train.gradient_clip); no checkpoint of this epoch was written",
          phase_, done, split, report->loss));
    }
  }
  const auto rss = resident_mib();
  auto opt = [](const std::optional<double>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  nlohmann::json entry{{"epoch", done},
                       {"lr", lr},
                       {"train_loss", train_loss},
                       {"train_acc", train_acc},
                       {"seconds", seconds},
                       {"rss_mib", opt(rss)}};
  // TensorBoard scalars (rank 0 only in data-parallel training).
  auto scalar = [&](const std::string& tag, double value) {
    if (events_) events_->add_scalar(tag, value, done);
  };
  scalar("loss/train", train_loss);
  scalar("acc/train", train_acc);
  scalar("lr", lr);
  bool improved = false;
  if (test) {
    entry["test_loss"] = test->loss;
    entry["test_acc"] = test->top1;
    for (const auto& [name, value] : eval::group_accuracies(*test)) {
      entry["test_" + name] = opt(value);
      if (value) scalar("acc_test/" + name, *value);
    }
    scalar("loss/test", test->loss);
    scalar("acc/test", test->top1);
  }
  if (val) {
    entry["val_loss"] = val->loss;
    entry["val_acc"] = val->top1;
    scalar("loss/val", val->loss);
    scalar("acc/val", val->top1);
  }
  if (const auto* chooser = validation_ ? val : test) {
    improved = chooser->top1 > best_acc1_;
    if (improved) {
      best_acc1_ = chooser->top1;
      best_epoch_ = done;
    }
  }
  history_.push_back(entry);
  if (events_) events_->flush();
  const auto took = format_duration(seconds);

  if (test) {
    spdlog::info(
        "{} epoch {}/{}: lr {:.3g}, train loss {:.4f}, train acc {:.2f}%, test loss "
        "{:.4f}, test top-1 {:.2f}% (head {}, tail {}){}, best on {} "
        "{:.2f}% @ {}, {}, resident {:.0f} MiB",
        phase_, done, cfg_.train.num_epoch, lr, train_loss, 100 * train_acc, test->loss,
        100 * test->top1, eval::format_percent(test->head), eval::format_percent(test->tail),
        val ? fmt::format(", validation top-1 {:.2f}%", 100 * val->top1) : "",
        validation_ ? "validation" : "test", 100 * best_acc1_, best_epoch_, took,
        rss.value_or(0.0));
  } else {
    spdlog::info("{} epoch {}/{}: lr {:.3g}, train loss {:.4f}, train acc {:.2f}% (not "
                 "evaluated: test.interval {}), {}, resident {:.0f} MiB",
                 phase_, done, cfg_.train.num_epoch, lr, train_loss, 100 * train_acc,
                 cfg_.test.interval, took, rss.value_or(0.0));
  }
  if (!dist::is_main()) return;
  const auto info = checkpoint_info(done);
  // best.pt before last.pt: a kill between the two leaves last.pt one epoch
  // behind, and the resume redoes that epoch and writes both again (the
  // other order could leave best.pt behind the best epoch last.pt names).
  if (improved) save_checkpoint(best_path(), model_, &optimizer_, info);
  save_checkpoint(last_path(), model_, &optimizer_, info);
  const auto every = cfg_.checkpoint.save_checkpoint_interval;
  if (every > 0 && done % every == 0) {
    save_checkpoint((fs::path(out_dir_) / "checkpoints" / fmt::format("epoch_{:04d}.pt", done))
                        .string(),
                    model_, &optimizer_, info);
  }
}

}  // namespace fsa::train::detail
