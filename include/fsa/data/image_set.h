// Labelled image sets held in memory, and the readers for the formats fsa
// understands: CIFAR binary, IDX (MNIST, Fashion-MNIST), image folders.
#pragma once

#include <torch/types.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace fsa::data {

/// Thrown for unreadable, missing or malformed data; the message names the
/// file (and record or line) and what was expected.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One image file and its class, as listed before decoding.
struct FileSample {
  std::string path;
  int64_t label;
};

/// A labelled image set: resident in memory (small-image datasets) or, for
/// list-file datasets, the files its images are decoded from on demand
/// (data/inputs.h turns either into network input).
struct ImageSet {
  torch::Tensor images;  ///< uint8 [N, C, H, W], pixel values 0..255; undefined when file-backed
  torch::Tensor labels;  ///< int64 [N], each in [0, class_names.size())
  std::vector<std::string> class_names;
  std::vector<FileSample> files;  ///< file-backed sets: image i is files[i] (else empty)

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  int64_t num_classes() const { return static_cast<int64_t>(class_names.size()); }
  bool file_backed() const { return !files.empty(); }
  /// The subset at `indices` (int64 [M]), in that order.
  ImageSet select(const torch::Tensor& indices) const;
};

/// Reads CIFAR binary batches. Each record is `label_bytes` label bytes (1 for
/// CIFAR-10; 2 for CIFAR-100, coarse then fine, of which the fine one is kept)
/// followed by 3072 pixel bytes (R, G, B planes of 32×32).
/// Throws DataError if a file is missing, its size is not a whole number of
/// records, or a label is >= num_classes (naming the file and record).
ImageSet read_cifar_batches(const std::vector<std::string>& files, int label_bytes,
                            int64_t num_classes);

/// CIFAR-10 from `root` (or `root/cifar-10-batches-bin`): data_batch_1..5.bin
/// for training, test_batch.bin for testing.
ImageSet read_cifar10(const std::string& root, bool train);

/// CIFAR-100 from `root` (or `root/cifar-100-binary`): train.bin / test.bin,
/// fine labels.
ImageSet read_cifar100(const std::string& root, bool train);

/// True if `root` holds CIFAR binary files for the given variant (10 or 100).
bool has_cifar_binary(const std::string& root, int variant);

/// Reads an IDX image file (magic 0x00000803, uint8 [N, H, W]) and its label
/// file (0x00000801, uint8 [N]), each gzipped or not. Images come out as
/// [N, 1, H, W]. Throws DataError on a bad magic number, a truncated file, a
/// count mismatch or a label >= num_classes.
ImageSet read_idx(const std::string& images_path, const std::string& labels_path,
                  int64_t num_classes);

/// Lists `dir/<class>/*.{jpg,jpeg,png,bmp}`; classes in sorted folder-name
/// order, files in sorted order. Hidden entries (names starting with '.',
/// such as Jupyter's .ipynb_checkpoints) are skipped, and said so once.
/// Throws DataError if `dir` is missing or has no class folders.
std::vector<FileSample> list_image_folder(const std::string& dir,
                                          std::vector<std::string>* class_names);

/// Decodes the files (in parallel over `threads` threads) into an ImageSet
/// of their common size, uint8 [N, 3, H, W] RGB whatever each file holds
/// (torchvision's ImageFolder loader; data/image_transforms.h decode_image).
/// Throws DataError naming the file that is not a readable regular file,
/// cannot be decoded (truncated, garbled, too large for OpenCV) or is of
/// another size. With `skip_corrupt`, files that cannot be decoded are left
/// out instead (each logged, then the count; `decoded`, if given, receives
/// the positions in `samples` of the images kept); other sizes still throw.
ImageSet decode_images(const std::vector<FileSample>& samples,
                       const std::vector<std::string>& class_names, int threads,
                       bool skip_corrupt = false, std::vector<int64_t>* decoded = nullptr);

}  // namespace fsa::data
