// The one training loop every phase and method runs on (in the spirit of
// torchvision's train_one_epoch / evaluate): a method supplies only its step
// (which batch, which forward pass, which loss) and its evaluation; the loop
// owns the rest of each epoch: the learning-rate schedule, backward,
// clipping and the optimiser step, running loss and accuracy, progress,
// evaluation every test.interval epochs (on the test split, and on the
// validation split when the dataset has one: it then chooses the best epoch),
// the divergence checks, the history, TensorBoard scalars and
// checkpoints/{last,best,epoch_NNNN}.pt (and last.pt every
// checkpoint.save_step_interval steps), and resume, at an epoch end or
// within an epoch.
//
//   struct MyMethod : train::TrainingMethod { ... };
//   auto result = train::fit(loop, method);
#pragma once

#include <ATen/core/Generator.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "fsa/data/long_tail.h"
#include "fsa/eval/meter.h"
#include "fsa/io/config.h"
#include "fsa/models/backbone.h"
#include "fsa/train/checkpoint.h"

namespace fsa::train {

/// One batch's forward pass, as a method hands it to the loop.
struct TrainingStep {
  torch::Tensor loss;    ///< float [], the batch's loss, with its autograd graph
  torch::Tensor logits;  ///< float [B, C], for the running accuracy
  torch::Tensor labels;  ///< int64 [B]
  int64_t images = 0;    ///< images the batch stands for (progress images/s)
  /// Data-parallel training: the images of the global batch whose share
  /// this step computed (data::InputBatch::global_size); 0 when every rank
  /// computes the whole batch (methods that do not share batches out).
  int64_t global_images = 0;
};

/// The split an evaluation runs on.
enum class Split { kTest, kValidation };

/// "test" or "validation".
const char* split_name(Split split);

/// A phase's or method's part of each epoch.
class TrainingMethod {
 public:
  virtual ~TrainingMethod() = default;
  /// Batches of one epoch (for progress).
  virtual int64_t batches_per_epoch() const = 0;
  /// Prepares 0-based `epoch`: modes of the network, the order of the
  /// batches. `gen` is the epoch's generator (seeded from the run seed, the
  /// phase and the epoch alone, so that a resumed run draws what an
  /// uninterrupted one would); every draw of the epoch comes from it.
  virtual void start_epoch(int64_t epoch, at::Generator gen) = 0;
  /// The next batch's forward pass and loss; nullopt after the epoch's last.
  virtual std::optional<TrainingStep> next_step() = 0;
  /// For mid-epoch checkpoints (checkpoint.save_step_interval): the
  /// method's own position in the epoch, as text, beyond what the loop keeps
  /// (the epoch generator's state, the running figures, the weights and
  /// optimiser); "" when the generator and the step count say it all;
  /// nullopt when the method cannot continue an epoch from a checkpoint
  /// (its checkpoints are then written at epoch ends only).
  virtual std::optional<std::string> position() const { return std::nullopt; }
  /// Called by a resume, right after start_epoch and after the loop has put
  /// the epoch generator back to its state at the checkpoint: continue the
  /// epoch after its first `steps` steps, whose position() was `state`.
  /// next_step then returns what step `steps` + 1 of the uninterrupted
  /// epoch would have. Throws std::invalid_argument for a state it cannot read.
  virtual void seek(int64_t steps, const std::string& state);
  /// Called after the epoch's last step, before evaluation and checkpoints:
  /// a method that trains parameters outside the network writes them into it
  /// here (LWS folds its class scales into the classifier).
  virtual void finish_epoch() {}
  /// The current weights on `split` (evaluation mode, no gradients). The
  /// validation split is asked for only when TrainingLoop::validation is set.
  virtual eval::Report evaluate(Split split) = 0;
};

/// What the loop trains and where it keeps the results.
struct TrainingLoop {
  TrainingLoop(const io::Config& config, std::string phase_name, uint64_t stream, uint64_t run_seed,
               std::string folder, models::Backbone& network, torch::optim::Optimizer& opt,
               std::vector<torch::Tensor> trained_params)
      : cfg(&config),
        phase(std::move(phase_name)),
        generator_stream(stream),
        seed(run_seed),
        out_dir(std::move(folder)),
        model(&network),
        optimizer(&opt),
        trained(std::move(trained_params)) {}

  const io::Config* cfg = nullptr;  ///< train.*, test.interval, checkpoint.*, log.*
  std::string phase;                ///< "phase_i", "phase_iii", ...: logs and checkpoints
  uint64_t generator_stream = 0;    ///< per-phase stream of the epoch generators
  uint64_t seed = 0;                ///< the run seed
  std::string out_dir;              ///< checkpoints/, the event file
  models::Backbone* model = nullptr;
  torch::optim::Optimizer* optimizer = nullptr;
  /// The parameters the optimiser trains (train.gradient_clip clips these).
  std::vector<torch::Tensor> trained;
  /// Evaluate on the validation split too and choose the best epoch on its
  /// top-1 (set when the dataset has a validation split).
  bool validation = false;
  /// The training set, whose fingerprint and class names every checkpoint
  /// records (so that a resume can refuse another one); may be null.
  const data::LongTailDataset* data = nullptr;
  /// Set when resuming: the checkpoint already loaded into model and
  /// optimiser; training continues after its epoch.
  std::optional<CheckpointInfo> resumed;
};

/// What fit returns: the last epoch's test report (the last epoch is always
/// evaluated) and the best evaluated epoch, chosen on `selected_on`.
struct FitResult {
  eval::Report last;
  /// The best epoch (1-based) and its test top-1 (fraction in [0, 1]).
  int64_t best_epoch = 0;
  double best_top1 = 0;
  /// The best epoch's validation top-1; nullopt without a validation split.
  std::optional<double> best_val_top1;
  /// The split that chose the best epoch: "validation" when the loop has
  /// one, else "test" (then best_top1 is an optimistic figure: report `last`).
  std::string selected_on = "test";
  nlohmann::json history;  ///< one object per epoch
  std::string last_checkpoint, best_checkpoint;
};

/// Thrown when SIGINT or SIGTERM asked the run to stop
/// (install_interrupt_handlers): the step under way finished, the rest of
/// the epoch was abandoned, and checkpoints/last.pt holds the last finished
/// epoch, from which --resume continues exactly.
class Interrupted : public std::runtime_error {
 public:
  Interrupted(int signal_number, const std::string& what)
      : std::runtime_error(what), signal(signal_number) {}
  int signal;  ///< SIGINT or SIGTERM: the process exits 128 + signal
};

/// Installs the SIGINT and SIGTERM handlers: the first signal asks the
/// training loop (and Phase II) to stop after the current batch
/// (Interrupted); a second ends the process at once with exit status
/// 128 + signal.
void install_interrupt_handlers();

/// The signal that asked to stop, or 0.
int interrupt_signal();

/// Throws Interrupted if a signal asked to stop; `where` says what was
/// abandoned ("phase_i epoch 3", ...) and `kept` what is on disk.
void throw_if_interrupted(const std::string& where, const std::string& kept);

/// Runs epochs (resumed epoch or 0) .. cfg.train.num_epoch − 1 of `method`;
/// a run resumed after its last epoch trains nothing and only evaluates. A
/// checkpoint from within an epoch (CheckpointInfo::step > 0) continues that
/// epoch at its next step, bit for bit as the uninterrupted run; it is
/// refused (CheckpointError) for a method without position().
/// Throws TrainingError (phases.h) when the running or test loss stops being
/// finite, before that epoch's checkpoints are written.
FitResult fit(const TrainingLoop& loop, TrainingMethod& method);

/// True if 0-based `epoch` of `num_epochs` is evaluated at test.interval
/// `interval`: every interval-th epoch and always the last.
bool is_evaluated_epoch(int64_t epoch, int64_t num_epochs, int64_t interval);

}  // namespace fsa::train
