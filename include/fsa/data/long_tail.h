// The long-tailed view of a dataset (METHOD.md, "Long-tailed training sets"):
// subsampling by imbalance factor, the head/tail split, shot groups and the
// fingerprint that ties Phase II outputs to one training set.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fsa/data/image_set.h"
#include "fsa/data/image_transforms.h"
#include "fsa/data/preprocessing.h"
#include "fsa/io/config.h"

namespace fsa::data {

/// Images kept per class: n_i = floor(n_max · (1/IF)^(i/(C−1))), i = 0…C−1.
/// C = 1 keeps n_max. Throws std::invalid_argument if IF < 1, C < 1 or n_max < 1.
std::vector<int64_t> long_tail_counts(int64_t n_max, int64_t num_classes,
                                      double imbalance_factor);

/// Indices (ascending) of the images kept from a balanced set with `labels`:
/// for class i, the first n_i of its images after a shuffle seeded by `seed`
/// (one std::mt19937_64 for all classes, in class order), n_max = the largest
/// class. A class with fewer than n_i images keeps all of them.
std::vector<int64_t> subsample_long_tail(const std::vector<int64_t>& labels,
                                         int64_t num_classes, double imbalance_factor,
                                         uint64_t seed);

/// A training set's indices split into the images trained on and the
/// held-out validation images, each ascending.
struct HoldOut {
  std::vector<int64_t> train, val;
};

/// Holds out a stratified validation split (dataset.val_fraction): of each
/// class with n >= 2 images, k = clamp(round(fraction · n), 1, n − 1) images,
/// the first k after a shuffle seeded by `seed` (one std::mt19937_64 on its
/// own stream, in class order); a class with one image keeps it for training.
/// Throws std::invalid_argument for a fraction outside [0, 0.5] or a label
/// outside [0, num_classes).
HoldOut hold_out_validation(const std::vector<int64_t>& labels, int64_t num_classes,
                            double fraction, uint64_t seed);

/// Images per class.
std::vector<int64_t> class_counts(const std::vector<int64_t>& labels, int64_t num_classes);

/// Head classes: sort by count descending (ties: lower index first) and take
/// the shortest prefix holding >= head_ratio of all images. If
/// `explicit_head` is non-empty it is the head instead. Returns a mask of C
/// entries. Throws std::invalid_argument for an explicit class outside [0, C).
std::vector<bool> head_classes(const std::vector<int64_t>& counts, double head_ratio,
                               const std::vector<int64_t>& explicit_head);

/// Shot group of a class with n training images: many (n > 100), medium
/// (20 <= n <= 100), few (n < 20).
enum class ShotGroup { kMany, kMedium, kFew };
ShotGroup shot_group(int64_t n);

/// What identifies a long-tailed training set.
struct Fingerprint {
  std::string dataset;
  double imbalance_factor = 0;
  uint64_t seed = 0;
  int64_t num_samples = 0;
  std::string sample_hash;  ///< FNV-1a 64 of (source index, label) pairs, hex

  /// Human-readable list of the fields that differ ("" if none).
  std::string differences(const Fingerprint& other) const;
};

/// FNV-1a 64-bit hash of the kept (source index, label) pairs, as 16 hex digits.
std::string hash_samples(const std::vector<int64_t>& source_indices,
                         const std::vector<int64_t>& labels);

/// A long-tailed training set and the balanced test set, in memory.
struct LongTailDataset {
  ImageSet train;  ///< kept images, ascending source order
  ImageSet test;
  /// The validation split that chooses the best epoch (and τ): held out of
  /// the training set (dataset.val_fraction) or a list-file dataset's
  /// dataset.val_list; empty (size() 0) when there is none.
  ImageSet val;
  std::vector<int64_t> source_indices;  ///< index of each kept image in the full training set
  std::vector<int64_t> class_counts;    ///< n_c of the kept set
  std::vector<bool> head;               ///< head-class mask (C)
  std::vector<double> mean, std;        ///< normalisation actually used
  Fingerprint fingerprint;
  std::string format;  ///< "cifar-binary", "image-folder", "idx" or "list-file"
  /// List-file datasets (file-backed splits): how a file becomes network
  /// input (torchvision's ImageNet pipelines at dataset.transform's sizes,
  /// normalised with `mean`/`std`), and the decoding worker threads.
  ImageTransform train_transform = ImageTransform::imagenet_train();
  ImageTransform eval_transform = ImageTransform::imagenet_eval();
  int workers = 0;
  /// How an image file becomes the input that evaluation gives the network
  /// (the test images' geometry and `mean`/`std`); checkpoints record it.
  Preprocessing preprocessing;

  int64_t num_classes() const { return train.num_classes(); }
  /// True for list-file datasets: images are decoded from files as batches
  /// are made (data/inputs.h), never held in memory.
  bool file_backed() const { return train.file_backed(); }
};

/// Loads the dataset a config names, applies the long-tail subsampling to the
/// training set and the head/tail split. List-file datasets (ImageNet-LT,
/// Places-LT, iNaturalist-LT, ListFile-LT) are taken as their lists give them
/// (the lists are the long tail; dataset.imbalance_factor is not applied) and
/// stay file-backed; every listed file must exist. The validation split, if
/// any, is held out after the subsampling (class_counts and the fingerprint
/// are of the images trained on). Throws DataError for missing or
/// malformed data (naming the path), io::ConfigError for an unknown dataset
/// name.
LongTailDataset load_long_tail_dataset(const io::DatasetConfig& dataset,
                                       const io::FinetuneConfig& split, uint64_t seed,
                                       int threads);

/// The evaluation preprocessing a dataset config implies without loading the
/// data (for checkpoints written before they recorded theirs): CIFAR 32×32,
/// MNIST-style 28×28 padded by 2, list-file datasets' dataset.transform
/// sizes; dataset.normalize or the dataset's default mean/std. Throws
/// std::invalid_argument for image-folder datasets, whose image size only the
/// data tells.
Preprocessing recorded_preprocessing(const io::DatasetConfig& dataset);

}  // namespace fsa::data
