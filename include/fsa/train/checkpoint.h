// Checkpoints that describe themselves (STYLE.md 5): weights, optimiser
// state, epoch, phase and the resolved config, in one file written
// atomically. The file is a pickle (torch::pickle_save) of a dict of tensors
// and plain values, so Python's torch.load reads it: keys `state_dict`,
// `optimizer` (LibTorch's optimiser archive as uint8 bytes), `epoch`,
// `best_acc1`, `best_epoch`, `phase`, `arch`, `num_classes`, `cam_layer`,
// `config`, `history`, and `checksum`: the CRC-32 (zlib) of the state dict's
// tensor bytes in order, then of the optimiser bytes, so that flipped bytes in
// the weights are caught at load instead of training or testing silently.
#pragma once

#include <torch/optim/optimizer.h>

#include <stdexcept>
#include <string>

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
  double best_acc1 = 0;    ///< best test top-1 so far, fraction
  int64_t best_epoch = 0;  ///< epoch (1-based) of best_acc1
  std::string arch;
  int64_t num_classes = 0;
  std::string cam_layer;
  std::string config;   ///< resolved YAML
  std::string history;  ///< per-epoch figures so far, JSON array text
};

/// Writes the checkpoint to `path` through a temporary file and a rename, so
/// that a crash never leaves a half-written checkpoint. `optimizer` may be null.
void save_checkpoint(const std::string& path, models::Backbone& model,
                     torch::optim::Optimizer* optimizer, const CheckpointInfo& info);

/// Reads only the description (arch, classes, epoch, ...).
CheckpointInfo read_checkpoint_info(const std::string& path);

/// Loads weights into `model` (and the optimiser state if `optimizer` is not
/// null and the file has one). A `module.` prefix (DataParallel) is stripped.
/// Throws CheckpointError naming the file and the key on a missing key or a
/// shape mismatch, if the file is not a readable checkpoint, or if its weights
/// do not match its checksum (a file without one, as written by other tools,
/// is loaded unchecked).
CheckpointInfo load_checkpoint(const std::string& path, models::Backbone& model,
                               torch::optim::Optimizer* optimizer);

}  // namespace fsa::train
