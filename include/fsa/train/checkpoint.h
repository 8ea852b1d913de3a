// Checkpoints that describe themselves (STYLE.md 5): weights, optimiser
// state, epoch, phase, the resolved config, the training set's fingerprint
// and class names, in one file written atomically. The file is a plain
// pickle (io::torch_save_bytes) of a dict of tensors and plain values, so
// Python's torch.load(..., weights_only=True) reads it: keys `state_dict`,
// `optimizer` (LibTorch's optimiser archive as uint8 bytes), `epoch`,
// `best_acc1`, `best_epoch`, `phase`, `arch`, `num_classes`, `cam_layer`,
// `config`, `history`, `fingerprint`, `class_names`, `preprocessing` (how an
// image file becomes the network's input, JSON text: data/preprocessing.h),
// `step` and `position` (mid-epoch checkpoints only: steps done of epoch
// `epoch` + 1, and the loop's and method's position in it as JSON text),
// `format` (2) and `checksum`: the CRC-32 (zlib) of every other entry
// (detail::seal), so that a flipped byte anywhere that matters, in the
// weights or in the epoch, history or config, is caught at load instead of
// training or testing silently. Files of format 1 (fsa before 2026-12-01)
// carry a CRC of the weights and optimiser bytes only, and are still read.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fsa/data/long_tail.h"
#include "fsa/models/backbone.h"

namespace fsa::train {

/// Thrown for a missing, truncated or mismatched checkpoint; names the file.
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CheckpointInfo {
  std::string phase;       ///< "phase_i" or "phase_iii"
  int64_t epoch = 0;       ///< completed epochs
  /// Steps done of the next epoch (epoch + 1) in a mid-epoch checkpoint
  /// (checkpoint.save_step_interval); 0 at an epoch end.
  int64_t step = 0;
  /// With step > 0: where the epoch stands, JSON text written and read by
  /// the training loop (fit): the epoch generator's state, the running loss
  /// and accuracy, the method's own position (TrainingMethod::position).
  std::string position;
  double best_acc1 = 0;    ///< best test top-1 so far, fraction
  int64_t best_epoch = 0;  ///< epoch (1-based) of best_acc1
  std::string arch;
  int64_t num_classes = 0;
  std::string cam_layer;
  std::string config;   ///< resolved YAML
  std::string history;  ///< per-epoch figures so far, JSON array text
  /// The training set the weights were trained on; dataset "" when the file
  /// does not record it (format 1).
  data::Fingerprint fingerprint;
  std::vector<std::string> class_names;  ///< empty when not recorded
  /// How an image becomes the network's input (data::Preprocessing::to_json,
  /// JSON text), so that the file can be used alone (fsa predict); "" when
  /// not recorded (fsa before 2026-12-02).
  std::string preprocessing;
  /// The file's `checksum` entry (identifies these exact weights and
  /// metadata; Phase II records it so that Phase III can tell whether its
  /// analysis was made from the same network); 0 for a file without one.
  int64_t checksum = 0;
};

/// Writes the checkpoint to `path` through a temporary file and a rename, so
/// that a crash never leaves a half-written checkpoint. `optimizer` may be null.
void save_checkpoint(const std::string& path, models::Backbone& model,
                     torch::optim::Optimizer* optimizer, const CheckpointInfo& info);

/// Reads only the description (arch, classes, epoch, ...), after checking
/// the file's checksum. Throws CheckpointError as load_checkpoint.
CheckpointInfo read_checkpoint_info(const std::string& path);

/// Loads weights into `model` (and the optimiser state if `optimizer` is not
/// null and the file has one). A `module.` prefix (DataParallel) is stripped.
/// Throws CheckpointError naming the file and the key on a missing key or a
/// shape mismatch, if the file is not a readable checkpoint (or is a pipe,
/// a folder, a device), if its contents do not match its checksum, or if a
/// file of this fsa's format has lost its checksum (a file of no fsa format,
/// as written by other tools, is loaded unchecked).
CheckpointInfo load_checkpoint(const std::string& path, models::Backbone& model,
                               torch::optim::Optimizer* optimizer);

/// The network a checkpoint holds, built as it was trained (its arch,
/// classes and classifier kind, the last from its recorded config), with its
/// weights loaded, on the CPU in evaluation mode. `info`, if given, receives
/// the file's description. Throws CheckpointError as load_checkpoint, and
/// naming the file for an architecture this fsa does not know.
std::shared_ptr<models::Backbone> load_checkpoint_model(const std::string& path,
                                                        CheckpointInfo* info = nullptr);

}  // namespace fsa::train
