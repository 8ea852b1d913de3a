// Starting a network from weights that PyTorch saved (model.pretrained): a
// torchvision ResNet's state_dict, a CIFAR ResNet's, the FSA reference
// implementation's checkpoints, or a fsa state_dict export.
//
//   torch.save(torchvision.models.resnet152(weights="IMAGENET1K_V1").state_dict(), "r152.pth")
//   model: {name: resnet152, pretrained: r152.pth}     # then train on 365 classes
#pragma once

#include <string>
#include <vector>

#include "fsa/models/backbone.h"

namespace fsa::train {

/// What load_pretrained did.
struct PretrainedLoad {
  size_t loaded = 0;  ///< parameters and buffers copied from the file
  /// The classifier's entries left at their fresh initialisation: the file's
  /// head has another number of classes, is missing, or the model's
  /// classifier is cosine (model.classifier: cosine).
  std::vector<std::string> reinitialised;
  /// Entries of the file that name the same tensors twice (the reference
  /// implementation's `feature_sub_net.*` and `classifier.*`), skipped.
  size_t duplicates = 0;
};

/// Copies the weights in the torch.save file `path` (io::read_state_dict:
/// any of its wrappers, a `module.` prefix) into `model`, matching names
/// strictly: every parameter and buffer of the model but the classifier
/// must be in the file with its shape (a BatchNorm's `num_batches_tracked`,
/// which PyTorch before 0.4.1 did not save, may be missing), and the file may
/// hold nothing else. The classifier may be named `fc` (torchvision, the
/// reference) or `linear` (the usual CIFAR ResNet) in the file whatever the
/// model calls it; it is loaded when its shape matches and left as
/// initialised otherwise (logged). Values are converted to the model's dtype
/// and device; the memory format of the model's weights is kept.
/// Throws CheckpointError naming `path` for an unreadable file or one whose
/// names or shapes do not fit, listing the keys concerned.
PretrainedLoad load_pretrained(const std::string& path, models::Backbone& model);

}  // namespace fsa::train
