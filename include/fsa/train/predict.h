// `fsa predict`: a trained network on one's own images. The network, its
// class names and the way an image becomes its input (data::Preprocessing)
// come from the checkpoint, so that a dataset's own test images get exactly
// the predictions `fsa test` counts. A plain PyTorch state_dict works too,
// given the network's name (torchvision's ImageNet evaluation transform then).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fsa/data/preprocessing.h"

namespace fsa::train {

struct PredictOptions {
  /// An fsa checkpoint (any phase, or `fsa export`'s), or a torch.save file
  /// of a state_dict (io::read_state_dict's wrappers) when `model` is given.
  std::string checkpoint;
  /// For a state_dict: the network (resnet18, resnet32, ...); the classes are
  /// the rows of its classifier, named by their index; the preprocessing is
  /// torchvision's ImageNet evaluation transform for ImageNet ResNets
  /// (Resize(256) → CenterCrop(224), ImageNet mean/std) and Resize((32, 32))
  /// with CIFAR-10's mean/std for CIFAR ResNets. Ignored for fsa checkpoints.
  std::string model;
  /// For a state_dict with an ImageNet ResNet: other Resize / CenterCrop
  /// sides (0 keeps 256 / 224).
  int64_t resize = 0, crop = 0;
  std::vector<std::string> images;  ///< image files, predicted in this order
  int64_t top_k = 5;                ///< classes reported per image (at most C)
  int64_t batch_size = 64;
  std::string device = "cpu";       ///< cpu, cuda or cuda:N
  /// auto, fp32 or bf16-mixed; auto is what the config key resolves to (bf16-mixed
  /// on a CPU with native bfloat16), so that predictions equal `fsa test`'s.
  std::string precision = "auto";
  int threads = 0;                  ///< intra-op threads; 0: all hardware threads
  /// When not empty: an overlay of each image's class activation map for its
  /// predicted class (at the checkpoint's CAM layer), DIR/NNNN_<name>.png.
  std::string cam_dir;
};

/// One image's outcome.
struct ImagePrediction {
  std::string image;
  std::vector<int64_t> classes;       ///< top-k class indices, most probable first
  std::vector<double> probabilities;  ///< their softmax probabilities
  std::string error;                  ///< why it was not predicted; "" when it was
  std::string cam;                    ///< the overlay written, if any
};

struct Predictions {
  std::vector<std::string> class_names;  ///< C names (indices as text when unrecorded)
  data::Preprocessing preprocessing;     ///< what was applied to every image
  std::string source;                    ///< "resnet32 with 10 classes, phase_iii epoch 10 of C.pt"
  std::vector<ImagePrediction> images;   ///< one per input image, in order
  /// float32 [N, C] logits and [N, K] globally pooled features (the input of
  /// the classifier), row i for image i; rows of images not predicted are NaN.
  torch::Tensor logits, features;
  int64_t failed() const;
};

/// Runs the network on opts.images in batches. An image that cannot be read
/// or decoded is recorded with its error (the others are still predicted).
/// Throws CheckpointError for an unreadable checkpoint or state_dict,
/// io::ConfigError for a bad option (no images, top_k < 1, batch_size < 1,
/// a plain state_dict without `model`, an unknown device or precision),
/// TrainingError when the network's logits are not finite (NaN weights).
Predictions predict(const PredictOptions& opts);

/// The image files under `dir`, recursively, sorted by path: .jpg, .jpeg,
/// .png, .bmp (any case); hidden entries (names starting with '.') skipped.
/// Throws data::DataError if `dir` is not a readable folder or holds no image.
std::vector<std::string> images_in_folder(const std::string& dir);

/// The image paths a list file gives, one per non-blank line: the whole line
/// (trimmed, a UTF-8 byte-order mark and CRs removed), or, when its last
/// space-separated field is an integer, everything before it (the list-file
/// datasets' `path label` lines); relative paths are taken under `root` when
/// it is not empty. Throws data::DataError naming the file and line for an
/// unreadable list, a NUL byte, or a list without any path.
std::vector<std::string> images_in_list(const std::string& list, const std::string& root);

/// A table for the terminal: image, then the top-k "name (p%)".
std::string predictions_table(const Predictions& p);

/// {"source", "preprocessing", "class_names", "predictions": [{"image",
/// "top": [{"class", "name", "probability"}], "cam"?} or {"image", "error"}]}.
nlohmann::json predictions_json(const Predictions& p);

/// CSV with a header: image, then class_i, name_i, probability_i for i = 1..k,
/// then error; fields quoted where they hold a comma, quote or newline.
std::string predictions_csv(const Predictions& p);

}  // namespace fsa::train
