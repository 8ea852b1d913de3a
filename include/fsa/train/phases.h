// The three phases of the method (METHOD.md) and evaluation, each a function
// of a typed config and an output folder, so that a test can call it in
// process. Each writes into its folder: config.yaml (resolved), metrics.json
// and its own files; the library never touches anything outside it.
#pragma once

#include <torch/types.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "fsa/data/long_tail.h"
#include "fsa/eval/meter.h"
#include "fsa/io/config.h"
#include "fsa/models/backbone.h"

namespace fsa::train {

/// Thrown when training diverges (a NaN or infinite loss); names the phase,
/// epoch and batch.
class TrainingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What every phase needs and the pipeline shares: the device and the data.
struct Workspace {
  torch::Device device{torch::kCPU};
  data::LongTailDataset data;
  uint64_t seed = 0;
};

/// Sets threads (config or all hardware threads) and the global seed, checks
/// the device, loads the dataset. Throws io::ConfigError / data::DataError.
Workspace make_workspace(const io::Config& cfg);

/// A run resumed under precision or memory_format `auto` goes on with what
/// it began with (the resolved config stored in cfg.checkpoint.resume), not
/// with what `auto` picks on this machine: a run moved between machines
/// keeps its numerics. Explicit values are left as given (resuming then logs
/// the difference). Does nothing without a checkpoint to resume. Throws
/// CheckpointError for an unreadable checkpoint.
void keep_resumed_precision(io::Config& cfg);

/// Parses "cpu", "cuda" or "cuda:N"; throws io::ConfigError if unknown or if
/// CUDA is asked for and not available.
torch::Device parse_device(const std::string& name);

/// Result of a phase that trains or evaluates a classifier.
struct PhaseResult {
  eval::Report report;     ///< the final model on the test set
  nlohmann::json metrics;  ///< the object written to metrics.json
  std::string checkpoint;  ///< path of the final checkpoint ("" if none)
  std::string best_checkpoint;
};

/// Phase I: trains the whole network on the long-tailed set (SGD/Adam, the
/// configured schedule, cross-entropy), tests after every epoch, keeps
/// checkpoints/{last,best,epoch_NNNN}.pt; resumes from checkpoint.resume.
/// Throws TrainingError on a non-finite loss.
PhaseResult run_phase_i(const io::Config& cfg, Workspace& ws, const std::string& out_dir);

/// Phase II outputs, also saved as analysis.pt (+ features.pt if stored).
struct Analysis {
  /// float [C, C]: S[c][j] = mean softmax_j over the training images of
  /// class c; undefined unless feature.score_matrix asked for it.
  torch::Tensor score_matrix;
  /// int64 [C, K]: per class t, its first K confusing-class candidates by
  /// S[c][t] descending, −1 padded (ConfusingRanking; K = max(finetune.Nf,
  /// kKeptConfusing), at most C − 1; files written before fsa kept K = C − 1).
  torch::Tensor confusing;
  /// float [C, K]: S[c][t] of each entry of `confusing`, NaN where it is −1
  /// (undefined in files written before fsa kept it).
  torch::Tensor confusing_scores;
  data::Fingerprint fingerprint;
  std::string arch, cam_layer, confusing_from;
  /// The Phase I checkpoint it was made from: its path when written, and its
  /// checksum entry (0 when not recorded), which Phase III compares with the
  /// checkpoint it fine-tunes.
  std::string checkpoint;
  int64_t checkpoint_checksum = 0;
};

/// Confusing classes Phase II keeps per class at least (more when
/// finetune.Nf is larger): Phase III and `fsa visualize` may then use any
/// Nf up to this without running Phase II again.
inline constexpr int64_t kKeptConfusing = 10;

/// Phase II: confusing classes (analysis.pt and confusing_classes.txt), the
/// score matrix if cfg.feature.score_matrix, and, if cfg.feature.store, the
/// offline feature store (features.pt: feature maps and CAMs of every
/// training image, no augmentation). `checkpoint` is the Phase I checkpoint.
/// The training images are visited class by class, so that only one row of
/// the score matrix is summed at a time: memory grows with C × K, not C²
/// (with the score matrix asked for: C² floats). Data-parallel: each rank
/// takes a contiguous range of classes of about equal image counts, and
/// the rankings, the score matrix and the store are gathered on every rank
/// (rank 0 writes the files).
Analysis run_phase_ii(const io::Config& cfg, Workspace& ws, const std::string& checkpoint,
                      const std::string& out_dir);

/// Reads analysis.pt; throws CheckpointError naming the file if unreadable,
/// not an analysis, or not matching its checksum.
Analysis load_analysis(const std::string& path);

/// Reads analysis.pt and checks that it describes the workspace's training
/// set; throws CheckpointError naming the file and what differs.
Analysis load_matching_analysis(const std::string& path, const Workspace& ws);

/// The confusing-class candidates of every class from a whole score matrix
/// (METHOD.md, Phase II): row t lists the classes c ≠ t (head classes only,
/// when `head_only`) by S[c][t] descending, ties by lower c, then −1
/// padding. scores float [C, C] on the CPU; head: mask of C classes.
/// Returns int64 [C, max(C − 1, 1)].
torch::Tensor rank_confusing(const torch::Tensor& scores, const std::vector<bool>& head,
                             bool head_only);

/// The confusing classes of tail class t: its first Nf candidates.
std::vector<int64_t> confusing_classes(const Analysis& a, int64_t t, int64_t nf);

/// Phase III: fine-tunes the classifier head on balanced batches with fused
/// feature maps (online, or offline from features.pt beside the analysis).
/// Refuses an analysis made from another training set, naming what differs.
PhaseResult run_phase_iii(const io::Config& cfg, Workspace& ws, const std::string& checkpoint,
                          const std::string& analysis_path, const std::string& out_dir);

/// Evaluates a checkpoint on the test set; writes metrics.json in out_dir.
PhaseResult run_test(const io::Config& cfg, Workspace& ws, const std::string& checkpoint,
                     const std::string& out_dir);

/// Checks what Phase III needs of its config before any work: a batch that
/// holds at least one group of 2·(1+Na) maps. Throws io::ConfigError.
void validate_phase_iii(const io::Config& cfg);

/// Checks a pipeline before any work: the phases share dataset, seed, device
/// and model; Phase III's config is valid. Throws io::ConfigError.
void validate_pipeline(const io::PipelineConfig& cfg);

/// What the data must give the pipeline, checked before Phase I: Phase III
/// needs at least one tail class to augment and one head class to draw
/// confusing classes from (ws.data.head). Throws io::ConfigError naming
/// finetune.head_ratio otherwise.
void validate_pipeline_data(const io::PipelineConfig& cfg, const Workspace& ws);

/// All three phases on `ws` (made from cfg.phase_i), each in out_dir/phase_i,
/// phase_ii, phase_iii; writes out_dir/metrics.json with phase_i and
/// phase_iii objects and returns the side-by-side table that it also logs.
std::string run_pipeline(const io::PipelineConfig& cfg, Workspace& ws, const std::string& out_dir);

/// Top-1 over a test set, batched, in evaluation mode.
/// images uint8 [N, C, H, W]; returns the meter-derived report. With
/// `bf16_mixed` the forward passes run under AutocastGuard (precision.h); the
/// loss and the meter take the logits as float32. A non-zero
/// `logit_adjust_tau` applies post-hoc logit adjustment (train/loss.h) with
/// the training set's class prior before the loss and the meter.
eval::Report evaluate(models::Backbone& model, const data::ImageSet& test,
                      const data::LongTailDataset& train, torch::Device device, int64_t batch_size,
                      bool bf16_mixed = false, double logit_adjust_tau = 0.0);

/// JSON object of a report: top1, per_class, head, tail, many, medium, few
/// (null where a group is empty), loss, class_counts.
nlohmann::json report_json(const eval::Report& r, const std::vector<int64_t>& class_counts);

/// A table of Phase I beside Phase III: overall, head/tail, shot groups, per class.
std::string format_comparison(const eval::Report& before, const eval::Report& after,
                              const data::LongTailDataset& data);

}  // namespace fsa::train
