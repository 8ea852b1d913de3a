// `fsa visualize`: pictures of what a trained network looks at (its class
// activation maps over the images) and of what feature-space augmentation
// makes (METHOD.md, Phase II maps and Phase III step 2 fusion).
#pragma once

#include <string>
#include <vector>

#include "fsa/io/config.h"
#include "fsa/train/phases.h"

namespace fsa::train {

struct VisualizeOptions {
  std::string checkpoint;  ///< weights to look through (Phase I or Phase III)
  std::string out_dir;
  /// Classes to draw; empty: the tail classes of the workspace.
  std::vector<int64_t> classes;
  int64_t per_class = 8;       ///< overlays: images per class (the first ones of the split)
  std::string split = "test";  ///< overlays: "train" or "test"
  int64_t columns = 4;         ///< cells per contact-sheet row
  double alpha = 0.4;          ///< heat map opacity: out = (1 − alpha)·image + alpha·heat
  /// Images smaller than this (shorter side) are enlarged by nearest neighbour
  /// to at least this many pixels, so a person can see them (32×32 → 128×128);
  /// fusion panels to at least 160, to fit their labels (32×32 → 160×160).
  int64_t min_side = 128;
  /// Draw the fusion figures instead of the overlays (needs `analysis`).
  bool fusion = false;
  std::string analysis;       ///< Phase II analysis.pt (confusing classes)
  int64_t fusion_images = 4;  ///< tail images drawn, one figure each
};

/// What run_visualize wrote.
struct VisualizeResult {
  std::vector<std::string> overlays;        ///< out_dir/overlays/<c>_<name>/<index>.png
  std::vector<std::string> contact_sheets;  ///< out_dir/contact_<c>_<name>.png
  std::vector<std::string> fusion;          ///< out_dir/fusion_<k>.png
};

/// Checks the options against the workspace before any work: classes in
/// [0, C), per_class, columns, fusion_images and min_side >= 1, alpha in
/// [0, 1], split train|test, a checkpoint path given and present; with
/// fusion: an analysis path given, every chosen class a tail class.
/// Throws io::ConfigError naming the option and value.
void validate_visualize(const VisualizeOptions& opts, const Workspace& ws);

/// Overlays (default): for each chosen class, its first per_class images of
/// the split; for each, the CAM for its true class at cfg.feature.cam_layer
/// (cam::class_activation_maps, no augmentation), drawn with viz::overlay_cam
/// at the enlarged size into out_dir/overlays/<c>_<name>/<index>.png (index:
/// the image's position in the split), and per class a contact sheet
/// out_dir/contact_<c>_<name>.png of image | overlay cells captioned with the
/// true class and the predicted class with its softmax probability.
///
/// Fusion (opts.fusion): for fusion_images training images of the chosen tail
/// classes (taken in turn, drawn with a generator seeded by the workspace
/// seed), the Na fused maps that Phase III makes (augment::fuse_feature_maps
/// with their confusing classes from the analysis, images unaugmented), one
/// viz::fusion_figure per tail image in out_dir/fusion_<k>.png.
///
/// Validates first (validate_visualize), loads the checkpoint (and analysis),
/// and creates out_dir only then. Throws io::ConfigError, CheckpointError
/// (unreadable checkpoint or analysis; an analysis of another training set),
/// std::runtime_error if a file cannot be written.
VisualizeResult run_visualize(const io::Config& cfg, Workspace& ws, const VisualizeOptions& opts);

}  // namespace fsa::train
