// List-file datasets (METHOD.md, "Long-tailed training sets"): ImageNet-LT,
// Places-LT and iNaturalist-style splits, one `relative/path label` pair per
// line with paths relative to a data root; the split files define the
// imbalance. Also a reader for the NumPy .npy class-count vectors the
// literature ships beside them (class_count_ImageNet_LT.npy).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fsa/data/image_set.h"
#include "fsa/data/long_tail.h"
#include "fsa/io/config.h"

namespace fsa::data {

struct ListFileOptions {
  /// Folder the listed paths are relative to; samples' paths are root/path
  /// ("" keeps them as written).
  std::string root;
  /// Check that every listed file exists under root (one stat per line).
  bool check_exists = false;
  /// Number of classes; 0 infers it as the largest label + 1. When given, a
  /// label >= num_classes is an error.
  int64_t num_classes = 0;
};

/// A parsed split list.
struct ListFile {
  std::string source;               ///< the list file's path, for messages
  std::vector<FileSample> samples;  ///< in file order; path = root/relative
  int64_t num_classes = 0;

  int64_t size() const { return static_cast<int64_t>(samples.size()); }
  /// Labels in file order.
  std::vector<int64_t> labels() const;
  /// Images per class (num_classes entries).
  std::vector<int64_t> class_counts() const;
};

/// Reads a list file. Each non-blank line is `path label`: the label is the
/// last whitespace-separated field, the path everything before it (so a path
/// may hold spaces); leading/trailing spaces, tabs and a CR before the LF are
/// ignored, as are blank lines and a UTF-8 byte-order mark.
/// Throws DataError naming the file and the 1-based line number for a line
/// without a label, with a NUL byte, a label that is not a non-negative
/// integer, is >= options.num_classes or, when num_classes is 0 (inferred),
/// is 1,000,000 or more; naming file:line and the path for a listed path
/// that is missing, a folder, a pipe or a device, or too long for the OS
/// (with check_exists); and for an unreadable or empty list, or one that is
/// not a regular file.
ListFile read_list_file(const std::string& path, const ListFileOptions& options = {});

/// Reads a NumPy .npy file holding a 1-D little-endian int64 array ('<i8',
/// C order; format versions 1.0, 2.0 and 3.0). Throws DataError naming the
/// file for another dtype, shape or order, a bad header, or a short file.
std::vector<int64_t> read_npy_int64(const std::string& path);

/// What a training split's class counts say about its classes.
struct ClassStats {
  std::vector<int64_t> counts;    ///< n_c
  std::vector<bool> head;         ///< head_classes(counts, head_ratio, explicit_head)
  std::vector<ShotGroup> groups;  ///< shot_group(n_c)
  int64_t total = 0;              ///< sum of n_c
  int64_t min_count = 0, max_count = 0;
  int64_t num_many = 0, num_medium = 0, num_few = 0;  ///< classes per shot group
  int64_t num_head = 0;

  int64_t num_classes() const { return static_cast<int64_t>(counts.size()); }
};

/// Shot groups (many > 100, medium 20–100, few < 20) and the head/tail split
/// (METHOD.md) of a training split's per-class counts. Throws
/// std::invalid_argument for an explicit head class outside [0, C).
ClassStats class_stats(const std::vector<int64_t>& counts, double head_ratio = 0.9,
                       const std::vector<int64_t>& explicit_head = {});

/// The splits a list-file dataset config names (dataset.train_list, val_list,
/// test_list under dataset.root) and its training classes' statistics.
struct ListDataset {
  ListFile train, val, test;  ///< val is empty when no val_list is given
  ClassStats stats;           ///< of train, with the config's head/tail rule
  int64_t num_classes() const { return train.num_classes; }
};

/// Reads the lists of a list-file dataset config: a relative list path is
/// taken from dataset.root, listed paths are joined to dataset.root. The class
/// count is dataset.num_classes, or (0) the training list's largest label + 1,
/// and every list is checked against it. With `check_exists`, every listed
/// image must exist. Throws io::ConfigError for a dataset that is not a
/// list-file one or an explicit head class outside the classes; DataError for
/// a missing or malformed list (file:line), a label out of range, or a class
/// without training images.
ListDataset read_list_dataset(const io::DatasetConfig& dataset, const io::FinetuneConfig& split,
                              bool check_exists = false);

}  // namespace fsa::data
