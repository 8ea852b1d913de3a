// Helpers shared by the phase implementations; not part of the public API.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

#include "fsa/io/config.h"
#include "fsa/io/event_writer.h"
#include "fsa/io/progress.h"
#include "fsa/models/backbone.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/engine.h"
#include "fsa/train/phases.h"
#include <torch/optim/optimizer.h>

namespace fsa::train::detail {

/// A CPU generator seeded from the run seed, a phase tag and the epoch, so
/// that a resumed run draws exactly what an uninterrupted one would.
at::Generator epoch_generator(uint64_t seed, uint64_t phase_tag, int64_t epoch);

/// Checks checkpoint.resume, if set, before anything is written: a checkpoint
/// of `phase` ("phase_i", "phase_iii"), at `cam_layer` unless that is empty,
/// of the workspace's training set (fingerprint and class names, where the
/// checkpoint records them), with train.num_epoch >= its epoch (equal: the run
/// is finished and fit only completes its outputs), and a config that means
/// the same run (resume_differences). Logs the deliberate overrides. Throws
/// CheckpointError naming the file and what differs, or io::ConfigError
/// naming train.num_epoch.
void check_resume(const io::Config& cfg, const Workspace& ws, const std::string& phase,
                  const std::string& cam_layer);

/// The settings of `now` that differ from `stored` (a checkpoint's resolved
/// config), as "key: stored → now" lines: `refused` those that change what
/// the run means (seed, data, model, loss, sampler, optimiser, schedule,
/// batch size; for Phase III the finetune keys), `overrides` the rest
/// (epochs, threads, device, precision, logging, checkpoints, test).
struct ConfigDifferences {
  std::vector<std::string> refused, overrides;
};
ConfigDifferences resume_differences(const std::string& stored_yaml, const io::Config& now,
                                     const std::string& phase);

/// `cfg` with what loading the data resolved written in: dataset.normalize
/// holds the mean and std used (the dataset's defaults when the config left
/// them empty), so that config.yaml and the checkpoints' config say them.
io::Config resolved(const io::Config& cfg, const data::LongTailDataset& data);

/// Creates out_dir and writes the resolved config (resolved(cfg, data)) there.
void prepare_out_dir(const std::string& out_dir, const io::Config& cfg,
                     const data::LongTailDataset& data);

/// Writes JSON atomically, pretty-printed.
void write_json(const std::string& path, const nlohmann::json& j);

/// The configured network for the workspace's data, on the workspace device.
std::shared_ptr<models::Backbone> build_model(const io::Config& cfg, const Workspace& ws);

/// The format of the files fsa writes now (checkpoints, analysis.pt,
/// features.pt): 2 = sealed by `checksum` over every other entry.
constexpr int64_t kFileFormat = 2;

/// Seals a dict about to be pickled: sets `format` to kFileFormat and
/// `checksum` to the CRC-32 of every other entry (keys in sorted order;
/// tensors by dtype, shape and bytes; strings, numbers, lists and nested
/// dicts by value).
void seal(c10::impl::GenericDict& d);

/// Checks a read dict's seal. A dict with `format` >= 2 must carry a
/// `checksum` equal to its contents' (else CheckpointError naming `path`
/// and `what`, "checkpoint" or "Phase II analysis", as corrupt or edited);
/// one without `format` is of an older fsa or another tool, and passes.
/// Returns true if a seal was checked.
bool check_seal(const c10::impl::GenericDict& d, const std::string& path, const std::string& what);

/// The fingerprint as a pickle-able dict, and back.
c10::impl::GenericDict fingerprint_dict(const data::Fingerprint& f);
data::Fingerprint fingerprint_from(const c10::impl::GenericDict& d);

/// Running loss and accuracy of an epoch's batches, accumulated on the
/// device. Host copies are refreshed every batch on the CPU and every few
/// batches on a GPU, so the GPU never waits for the host; a non-finite loss
/// is caught at the next refresh (naming the batch) and throws TrainingError.
class RunningStats {
 public:
  RunningStats(torch::Device device, std::string phase, int64_t epoch);
  /// Adds one batch (1-based index `batch`): its mean loss, logits and targets.
  void add(const torch::Tensor& loss, const torch::Tensor& logits, const torch::Tensor& targets,
           int64_t batch);
  /// Refreshes the host copies now (call after the last batch).
  void sync(int64_t batch);
  double mean_loss() const { return host_seen_ ? host_loss_ / double(host_seen_) : 0.0; }
  /// Data-parallel training, after the epoch's last sync: the sums of every
  /// rank's batches, so that the epoch's figures are those of the whole
  /// training set on every rank.
  void combine_ranks();
  /// The sums so far (after sync), exactly, for a mid-epoch checkpoint; and
  /// back from one.
  nlohmann::json state() const;
  void restore(const nlohmann::json& state);
  double accuracy() const { return host_seen_ ? double(host_correct_) / double(host_seen_) : 0.0; }

 private:
  std::string phase_;
  int64_t epoch_, sync_every_;
  torch::Tensor loss_sum_, correct_;
  int64_t seen_ = 0, host_seen_ = 0, host_correct_ = 0;
  double host_loss_ = 0;
};

/// A console progress report for one epoch's batches, in the configured mode.
std::unique_ptr<io::Progress> make_progress(const io::Config& cfg, const std::string& label,
                                            int64_t steps);

/// Writes the run's report (charts, report.html) into out_dir; a failure is
/// logged as a warning, never fatal: the training results are already saved.
void write_report_safely(const std::string& out_dir);

/// Formats seconds as "1m23s".
std::string format_duration(double seconds);

/// The process's resident set size in MiB (VmRSS of /proc/self/status), or
/// nullopt where that file does not exist. Logged per epoch, so that memory
/// growth from epoch to epoch shows.
std::optional<double> resident_mib();

/// Feature maps of the whole of `split` at `layer`, float [N, K, h, w] on the
/// device, computed once in evaluation mode (under autocast with
/// `bf16_mixed`, kept as float32): when f is frozen each epoch's test needs
/// only the head.
torch::Tensor split_features(models::Backbone& model, const Workspace& ws,
                             const data::ImageSet& split, const std::string& layer, int64_t batch,
                             bool bf16_mixed);

/// The report of h over `features` (split_features) of the images with
/// `labels` (int64 [N]), with post-hoc logit adjustment by
/// `logit_adjust_tau` when it is not 0.
eval::Report evaluate_head(models::Backbone& model, const torch::Tensor& features,
                           const torch::Tensor& labels, const Workspace& ws,
                           const std::string& layer, int64_t batch, bool bf16_mixed,
                           double logit_adjust_tau);

/// The frozen feature maps of the evaluation splits, for methods that train
/// only the head.
struct SplitFeatures {
  torch::Tensor test;  ///< float [N, K, h, w] on the device
  torch::Tensor val;   ///< the same for the validation split; undefined if none
  const torch::Tensor& of(Split split) const { return split == Split::kTest ? test : val; }
};

/// split_features of the test split and, if the dataset has one, the
/// validation split.
SplitFeatures evaluation_features(models::Backbone& model, const Workspace& ws,
                                  const std::string& layer, int64_t batch, bool bf16_mixed);

/// The dataset's test or validation split.
const data::ImageSet& split_images(const data::LongTailDataset& data, Split split);

/// A training phase's result from fit(): the final report, the checkpoints and
/// the metrics.json object (report_json, best_top1, best_epoch,
/// best_selected_on, final_epoch, history, class_names).
PhaseResult phase_result(const FitResult& fitted, const io::Config& cfg, const Workspace& ws);

/// The first line of an exception's message, without LibTorch's C++ backtrace.
std::string short_message(const std::exception& e);

}  // namespace fsa::train::detail

namespace fsa::train::detail {

/// The end-of-epoch bookkeeping both training phases share: the history of
/// per-epoch figures, the log line, and checkpoints/{last,best,epoch_NNNN}.pt.
class EpochKeeper {
 public:
  /// `validation`: the best epoch is chosen on the validation split's
  /// top-1 (end_epoch's `val`), else on the test split's.
  /// `data`, if not null, is the training set the checkpoints record.
  EpochKeeper(std::string phase, const io::Config& cfg, std::string out_dir,
              models::Backbone& model, torch::optim::Optimizer& optimizer, bool validation,
              const data::LongTailDataset* data = nullptr);

  /// Restores history and best figures from a resumed checkpoint.
  void restore(const CheckpointInfo& info);

  /// Records epoch `epoch` (0-based) and saves checkpoints. `test` (and
  /// `val`) are null for an epoch that was not evaluated (test.interval): its
  /// history entry has no test figures and it cannot become the best epoch.
  /// Throws TrainingError, before any checkpoint, for a non-finite test or
  /// validation loss.
  void end_epoch(int64_t epoch, double lr, double train_loss, double train_acc,
                 const eval::Report* test, const eval::Report* val, double seconds);

  /// Writes last.pt in the middle of 0-based `epoch`, after `step` steps,
  /// with the loop's `position` (checkpoint.save_step_interval).
  void save_within_epoch(int64_t epoch, int64_t step, const std::string& position);

  const nlohmann::json& history() const { return history_; }
  /// The best evaluated epoch's top-1 on the selecting split.
  double best_acc1() const { return best_acc1_; }
  int64_t best_epoch() const { return best_epoch_; }
  std::string last_path() const;
  std::string best_path() const;

 private:
  /// What a checkpoint after `done` finished epochs records.
  CheckpointInfo checkpoint_info(int64_t done) const;

  std::string phase_;
  const io::Config& cfg_;
  std::string out_dir_;
  models::Backbone& model_;
  torch::optim::Optimizer& optimizer_;
  std::unique_ptr<io::EventWriter> events_;  ///< TensorBoard scalars in out_dir
  bool validation_;
  const data::LongTailDataset* data_;
  nlohmann::json history_ = nlohmann::json::array();
  double best_acc1_ = -1;
  int64_t best_epoch_ = 0;
};

}  // namespace fsa::train::detail
