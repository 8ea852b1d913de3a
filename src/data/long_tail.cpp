#include "fsa/data/long_tail.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>
#include <stdexcept>
#include <tuple>
#include <unordered_set>

#include "fsa/data/list_file.h"

namespace fs = std::filesystem;

namespace fsa::data {

std::vector<int64_t> long_tail_counts(int64_t n_max, int64_t num_classes,
                                      double imbalance_factor) {
  if (imbalance_factor < 1) {
    throw std::invalid_argument(fmt::format("imbalance factor must be >= 1, got {}",
                                            imbalance_factor));
  }
  if (num_classes < 1 || n_max < 1) {
    throw std::invalid_argument("long_tail_counts needs at least one class and one image");
  }
  std::vector<int64_t> counts(num_classes);
  for (int64_t i = 0; i < num_classes; ++i) {
    const double exponent = num_classes == 1 ? 0.0 : double(i) / double(num_classes - 1);
    // Computed as in the literature's numpy code: n_max * (1/IF)**(i/(C-1)).
    counts[i] = static_cast<int64_t>(std::floor(n_max * std::pow(1.0 / imbalance_factor,
                                                                  exponent)));
  }
  return counts;
}

std::vector<int64_t> class_counts(const std::vector<int64_t>& labels, int64_t num_classes) {
  std::vector<int64_t> counts(num_classes, 0);
  for (auto l : labels) ++counts.at(l);
  return counts;
}

std::vector<int64_t> subsample_long_tail(const std::vector<int64_t>& labels,
                                         int64_t num_classes, double imbalance_factor,
                                         uint64_t seed) {
  std::vector<std::vector<int64_t>> per_class(num_classes);
  for (size_t i = 0; i < labels.size(); ++i) per_class.at(labels[i]).push_back(int64_t(i));
  int64_t n_max = 0;
  for (const auto& v : per_class) n_max = std::max<int64_t>(n_max, v.size());
  const auto target = long_tail_counts(std::max<int64_t>(n_max, 1), num_classes,
                                       imbalance_factor);
  std::mt19937_64 rng(seed);
  std::vector<int64_t> kept;
  for (int64_t c = 0; c < num_classes; ++c) {
    auto& v = per_class[c];
    std::shuffle(v.begin(), v.end(), rng);
    const auto n = std::min<int64_t>(target[c], v.size());
    kept.insert(kept.end(), v.begin(), v.begin() + n);
  }
  std::sort(kept.begin(), kept.end());
  return kept;
}

HoldOut hold_out_validation(const std::vector<int64_t>& labels, int64_t num_classes,
                            double fraction, uint64_t seed) {
  if (!(fraction >= 0 && fraction <= 0.5)) {
    throw std::invalid_argument(
        fmt::format("the validation fraction must lie in [0, 0.5], got {}", fraction));
  }
  std::vector<std::vector<int64_t>> per_class(num_classes);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      throw std::invalid_argument(
          fmt::format("label {} of image {} is outside [0, {})", labels[i], i, num_classes));
    }
    per_class[labels[i]].push_back(int64_t(i));
  }
  // Its own stream: the same seed's subsampling shuffle stays independent.
  std::mt19937_64 rng(seed ^ 0x76616c6964617465ULL);  // "validate"
  HoldOut out;
  for (auto& v : per_class) {
    const auto n = static_cast<int64_t>(v.size());
    int64_t k = 0;
    if (fraction > 0 && n >= 2) {
      k = std::clamp<int64_t>(std::llround(fraction * double(n)), 1, n - 1);
    }
    std::shuffle(v.begin(), v.end(), rng);
    out.val.insert(out.val.end(), v.begin(), v.begin() + k);
    out.train.insert(out.train.end(), v.begin() + k, v.end());
  }
  std::sort(out.train.begin(), out.train.end());
  std::sort(out.val.begin(), out.val.end());
  return out;
}

std::vector<bool> head_classes(const std::vector<int64_t>& counts, double head_ratio,
                               const std::vector<int64_t>& explicit_head) {
  const auto num_classes = static_cast<int64_t>(counts.size());
  std::vector<bool> head(num_classes, false);
  if (!explicit_head.empty()) {
    for (auto c : explicit_head) {
      if (c < 0 || c >= num_classes) {
        throw std::invalid_argument(fmt::format(
            "finetune.head_classes: class {} is outside [0, {})", c, num_classes));
      }
      head[c] = true;
    }
    return head;
  }
  std::vector<int64_t> order(num_classes);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return counts[a] > counts[b]; });
  const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
  double running = 0;
  for (auto c : order) {
    if (running >= head_ratio * total) break;
    head[c] = true;
    running += counts[c];
  }
  return head;
}

ShotGroup shot_group(int64_t n) {
  if (n > 100) return ShotGroup::kMany;
  if (n >= 20) return ShotGroup::kMedium;
  return ShotGroup::kFew;
}

std::string hash_samples(const std::vector<int64_t>& source_indices,
                         const std::vector<int64_t>& labels) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&](int64_t v) {
    for (int b = 0; b < 8; ++b) {
      h ^= static_cast<uint64_t>(v >> (8 * b)) & 0xffU;
      h *= 1099511628211ULL;
    }
  };
  for (size_t i = 0; i < source_indices.size(); ++i) {
    mix(source_indices[i]);
    mix(labels[i]);
  }
  return fmt::format("{:016x}", h);
}

std::string Fingerprint::differences(const Fingerprint& o) const {
  std::vector<std::string> d;
  if (dataset != o.dataset) d.push_back(fmt::format("dataset '{}' vs '{}'", dataset, o.dataset));
  if (imbalance_factor != o.imbalance_factor) {
    d.push_back(fmt::format("imbalance factor {} vs {}", imbalance_factor, o.imbalance_factor));
  }
  if (seed != o.seed) d.push_back(fmt::format("random seed {} vs {}", seed, o.seed));
  if (num_samples != o.num_samples) {
    d.push_back(fmt::format("{} vs {} training images", num_samples, o.num_samples));
  }
  if (d.empty() && sample_hash != o.sample_hash) {
    d.push_back(fmt::format("sample list hash {} vs {}", sample_hash, o.sample_hash));
  }
  return fmt::format("{}", fmt::join(d, "; "));
}

namespace {

std::string canonical_name(std::string name) {
  std::string out;
  for (char ch : name) {
    if (ch != '-' && ch != '_' && ch != ' ') out += static_cast<char>(std::tolower(ch));
  }
  return out;
}

/// The mean and std each dataset is normalised with when dataset.normalize
/// leaves them empty (the values its literature uses); {} for an unknown name.
std::pair<std::vector<double>, std::vector<double>> default_normalization(
    const std::string& canonical) {
  if (canonical == "cifar10lt") return {{0.4914, 0.4822, 0.4465}, {0.2023, 0.1994, 0.2010}};
  if (canonical == "cifar100lt") return {{0.5071, 0.4867, 0.4408}, {0.2675, 0.2565, 0.2761}};
  if (canonical == "fashionmnistlt") return {{0.2860}, {0.3530}};
  if (canonical == "mnistlt") return {{0.1307}, {0.3081}};
  return {kImageNetMean, kImageNetStd};  // image folders and list-file datasets
}

std::vector<int64_t> to_vector(const torch::Tensor& t) {
  auto c = t.contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

torch::Tensor to_tensor(const std::vector<int64_t>& v) {
  return torch::tensor(v, torch::kInt64);
}

/// Keeps at most `per_class` images of each class, the first ones in order.
ImageSet limit_per_class(const ImageSet& set, int64_t per_class) {
  if (per_class <= 0) return set;
  std::vector<int64_t> seen(set.num_classes(), 0), keep;
  const auto labels = to_vector(set.labels);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (seen[labels[i]]++ < per_class) keep.push_back(int64_t(i));
  }
  return set.select(to_tensor(keep));
}

void require_root(const io::DatasetConfig& d) {
  if (d.root.empty()) {
    throw io::ConfigError(fmt::format("dataset.root is empty: set it to the folder holding the "
                                      "{} files", d.name));
  }
  if (!fs::exists(d.root)) {
    throw DataError(fmt::format("dataset.root '{}' does not exist", d.root));
  }
}

/// Class names of a list-file dataset: the folder of each class's first
/// training image (ImageNet-LT's WordNet ids, Places-LT's scene names) when
/// those are distinct, else "class_<c>".
std::vector<std::string> list_class_names(const ListFile& train) {
  std::vector<std::string> names(static_cast<size_t>(train.num_classes));
  for (const auto& s : train.samples) {
    auto& name = names[static_cast<size_t>(s.label)];
    if (name.empty()) name = fs::path(s.path).parent_path().filename().string();
  }
  std::unordered_set<std::string> distinct(names.begin(), names.end());
  const bool usable = distinct.size() == names.size() && !distinct.count("");
  for (size_t c = 0; c < names.size(); ++c) {
    if (!usable) names[c] = fmt::format("class_{}", c);
  }
  return names;
}

/// Positions of the set's images that can be decoded (dataset.skip_corrupt):
/// decodes every file once, in parallel, and logs each one left out.
std::vector<int64_t> decodable(const ImageSet& set, const std::string& split) {
  const auto n = set.size();
  std::vector<std::string> errors(static_cast<size_t>(n));
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      try {
        decode_image(set.files[size_t(i)].path);
      } catch (const DataError& e) {
        errors[size_t(i)] = e.what();
      }
    }
  });
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    if (errors[size_t(i)].empty()) {
      keep.push_back(i);
    } else {
      spdlog::warn("dataset.skip_corrupt: leaving out {} image: {}", split, errors[size_t(i)]);
    }
  }
  if (static_cast<int64_t>(keep.size()) < n) {
    spdlog::warn("dataset.skip_corrupt: left out {} of {} {} images", n - int64_t(keep.size()),
                 n, split);
  }
  return keep;
}

/// A file-backed ImageSet of a list's samples.
ImageSet file_set(const ListFile& list, const std::vector<std::string>& class_names) {
  ImageSet set;
  set.labels = to_tensor(list.labels());
  set.class_names = class_names;
  set.files = list.samples;
  return set;
}

}  // namespace

/// The smallest image side fsa trains on (images in memory).
constexpr int64_t kMinSide = 8;

LongTailDataset load_long_tail_dataset(const io::DatasetConfig& d,
                                       const io::FinetuneConfig& split, uint64_t seed,
                                       int threads) {
  const auto name = canonical_name(d.name);
  require_root(d);
  LongTailDataset out;
  ImageSet full_train;
  std::vector<int64_t> kept;
  const auto defaults = default_normalization(name);
  std::vector<double> mean = defaults.first, std = defaults.second;

  auto from_folder = [&](const std::string& root) {
    std::vector<std::string> classes, test_classes;
    const auto train_files = list_image_folder(root + "/train", &classes);
    std::vector<int64_t> labels;
    if (train_files.empty()) {
      throw DataError(
          fmt::format("image folder '{}/train' holds no images (expected "
                      "'train/<class>/*.jpg', .jpeg, .png or .bmp)",
                      root));
    }
    for (const auto& s : train_files) labels.push_back(s.label);
    const auto found = class_counts(labels, static_cast<int64_t>(classes.size()));
    for (size_t c = 0; c < classes.size(); ++c) {
      if (found[c] == 0) {
        throw DataError(
            fmt::format("image folder '{}/train/{}' holds no images (.jpg, .jpeg, "
                        ".png or .bmp); every class needs training images",
                        root, classes[c]));
      }
    }
    kept = subsample_long_tail(labels, classes.size(), d.imbalance_factor, seed);
    std::vector<FileSample> chosen;
    for (auto i : kept) chosen.push_back(train_files[i]);
    std::vector<int64_t> decoded;
    out.train = decode_images(chosen, classes, threads, d.skip_corrupt, &decoded);
    if (decoded.size() < kept.size()) {
      std::vector<int64_t> still;
      for (auto i : decoded) still.push_back(kept[static_cast<size_t>(i)]);
      kept = std::move(still);
    }
    auto test_files = list_image_folder(root + "/test", &test_classes);
    if (test_files.empty()) {
      throw DataError(
          fmt::format("image folder '{}/test' holds no images (expected "
                      "'test/<class>/*.jpg'); every accuracy would be 0 of 0",
                      root));
    }
    if (test_classes != classes) {
      auto only_in = [](const std::vector<std::string>& a, const std::vector<std::string>& b) {
        std::vector<std::string> out;
        std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
        return out.empty() ? std::string("none") : fmt::format("{}", fmt::join(out, ", "));
      };
      throw DataError(fmt::format(
          "image folder '{}': test/ and train/ have different class folders (only in train/: "
          "{}; only in test/: {}); expected the same classes in both",
          root, only_in(classes, test_classes), only_in(test_classes, classes)));
    }
    if (d.max_test_per_class > 0) {
      std::vector<int64_t> seen(classes.size(), 0);
      std::vector<FileSample> limited;
      for (auto& s : test_files) {
        if (seen[s.label]++ < d.max_test_per_class) limited.push_back(s);
      }
      test_files = std::move(limited);
    }
    out.test = decode_images(test_files, classes, threads, d.skip_corrupt);
    out.format = "image-folder";
  };

  if (name == "cifar10lt" || name == "cifar100lt") {
    const int variant = name == "cifar10lt" ? 10 : 100;
    if (has_cifar_binary(d.root, variant)) {
      full_train = variant == 10 ? read_cifar10(d.root, true) : read_cifar100(d.root, true);
      out.test = variant == 10 ? read_cifar10(d.root, false) : read_cifar100(d.root, false);
      out.format = "cifar-binary";
    } else if (fs::is_directory(fs::path(d.root) / "train")) {
      from_folder(d.root);
    } else {
      throw DataError(fmt::format(
          "dataset.root '{}' holds neither CIFAR-{} binary files ({}) nor an image folder "
          "(train/<class>/*.jpg)", d.root, variant,
          variant == 10 ? "cifar-10-batches-bin/data_batch_1.bin" : "cifar-100-binary/train.bin"));
    }
    if (out.format == "image-folder" && static_cast<int>(out.train.num_classes()) != variant) {
      throw DataError(fmt::format("dataset.root '{}': {} class folders, CIFAR-{} has {}",
                                  d.root, out.train.num_classes(), variant, variant));
    }
  } else if (name == "fashionmnistlt" || name == "mnistlt") {
    auto find = [&](const std::string& stem) {
      for (const auto& suffix : {".gz", ""}) {
        const auto p = fs::path(d.root) / (stem + suffix);
        if (fs::exists(p)) return p.string();
      }
      throw DataError(fmt::format("dataset.root '{}' has no IDX file '{}' (or '{}.gz')", d.root,
                                  stem, stem));
    };
    full_train = read_idx(find("train-images-idx3-ubyte"), find("train-labels-idx1-ubyte"), 10);
    out.test = read_idx(find("t10k-images-idx3-ubyte"), find("t10k-labels-idx1-ubyte"), 10);
    if (name == "fashionmnistlt") {
      const std::vector<std::string> names{"T-shirt/top", "Trouser", "Pullover", "Dress",
                                           "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                           "Bag",         "Ankle boot"};
      full_train.class_names = out.test.class_names = names;
    }
    out.format = "idx";
  } else if (name == "imagefolderlt") {
    from_folder(d.root);
  } else if (io::is_list_dataset(d.name)) {
    const auto lists = read_list_dataset(d, split, /*check_exists=*/true);
    const auto names = list_class_names(lists.train);
    out.train = file_set(lists.train, names);
    out.test = file_set(lists.test, names);
    if (lists.val.size() > 0) out.val = file_set(lists.val, names);
    if (d.max_test_per_class > 0) out.test = limit_per_class(out.test, d.max_test_per_class);
    kept.resize(static_cast<size_t>(out.train.size()));
    std::iota(kept.begin(), kept.end(), 0);
    if (d.skip_corrupt) {
      kept = decodable(out.train, "training");
      out.train = out.train.select(to_tensor(kept));
      out.test = out.test.select(to_tensor(decodable(out.test, "test")));
      if (out.val.size() > 0) out.val = out.val.select(to_tensor(decodable(out.val, "validation")));
    }
    out.format = "list-file";
  } else {
    throw io::ConfigError(fmt::format(
        "dataset.name '{}' is not known: expected CIFAR-10-LT, CIFAR-100-LT, "
        "Fashion-MNIST-LT, MNIST-LT, ImageFolder-LT or a list-file dataset (ImageNet-LT, "
        "Places-LT, iNaturalist-LT, ListFile-LT)",
        d.name));
  }

  if (name == "fashionmnistlt" || name == "mnistlt") {
    // The datasets' definition; a header rewritten to other sides of the same
    // byte count would otherwise scramble every image silently.
    for (const auto* set : {&full_train, &out.test}) {
      if (set->images.size(2) != 28 || set->images.size(3) != 28) {
        throw DataError(
            fmt::format("dataset.root '{}': {} IDX images are {}x{}; {} images are "
                        "28x28",
                        d.root, set == &full_train ? "training" : "test", set->images.size(3),
                        set->images.size(2), d.name));
      }
    }
  }
  if (full_train.labels.defined()) {
    const auto labels = to_vector(full_train.labels);
    kept = subsample_long_tail(labels, full_train.num_classes(), d.imbalance_factor, seed);
    out.train = full_train.select(to_tensor(kept));
    if (d.max_test_per_class > 0) out.test = limit_per_class(out.test, d.max_test_per_class);
  }
  if (d.val_fraction > 0) {
    const auto split_at =
        hold_out_validation(to_vector(out.train.labels), out.num_classes(), d.val_fraction, seed);
    out.val = out.train.select(to_tensor(split_at.val));
    out.train = out.train.select(to_tensor(split_at.train));
    std::vector<int64_t> trained;
    trained.reserve(split_at.train.size());
    for (auto i : split_at.train) trained.push_back(kept[static_cast<size_t>(i)]);
    kept = std::move(trained);
  }
  if (out.test.size() == 0) {
    throw DataError(
        fmt::format("dataset '{}' ({}): the test split has no images; every accuracy "
                    "would be 0 of 0",
                    d.name, d.root));
  }
  if (!out.file_backed() && out.test.images.sizes().slice(1) != out.train.images.sizes().slice(1)) {
    throw DataError(
        fmt::format("dataset '{}' ({}): test images are {} (channels, height, width), "
                    "training images {}; expected one size",
                    d.name, d.root, c10::str(out.test.images.sizes().slice(1)),
                    c10::str(out.train.images.sizes().slice(1))));
  }
  out.source_indices = kept;
  const auto train_labels = to_vector(out.train.labels);
  out.class_counts = class_counts(train_labels, out.num_classes());
  const auto empty = std::count(out.class_counts.begin(), out.class_counts.end(), 0);
  if (empty > 0) {
    const auto first =
        std::find(out.class_counts.begin(), out.class_counts.end(), 0) - out.class_counts.begin();
    const auto why =
        out.format == "list-file"
            ? std::string(
                  "the training list has no line with such a label; number the classes "
                  "0..C-1 without gaps, or set dataset.num_classes to the classes used")
            : fmt::format(
                  "after subsampling at imbalance factor {}; lower dataset.kwargs.im or "
                  "add images",
                  d.imbalance_factor);
    throw DataError(fmt::format(
        "dataset '{}': {} of the {} classes have no training images "
        "(the first: class {}, '{}'): {}",
        d.root, empty, out.num_classes(), first, out.train.class_names[size_t(first)], why));
  }
  try {
    out.head = head_classes(out.class_counts, split.head_ratio, split.head_classes);
  } catch (const std::invalid_argument& e) {
    throw io::ConfigError(e.what());
  }
  if (!out.file_backed() &&
      (out.train.images.size(2) < kMinSide || out.train.images.size(3) < kMinSide)) {
    throw DataError(fmt::format(
        "dataset '{}' ({}): the images are {}x{} pixels; the ResNets need "
        "at least {}x{} (their feature maps shrink 4 to 32 times)",
        d.name, d.root, out.train.images.size(3), out.train.images.size(2), kMinSide, kMinSide));
  }
  if (!out.file_backed()) {
    out.preprocessing.height = out.train.images.size(2);
    out.preprocessing.width = out.train.images.size(3);
    out.preprocessing.channels = out.train.images.size(1);
  }
  // 28×28 digits and garments are zero-padded to the 32×32 the CIFAR ResNets take.
  if (!out.file_backed() && out.train.images.size(2) == 28 && out.train.images.size(3) == 28) {
    out.preprocessing.pad = 2;
    out.train.images = torch::constant_pad_nd(out.train.images, {2, 2, 2, 2}, 0);
    out.test.images = torch::constant_pad_nd(out.test.images, {2, 2, 2, 2}, 0);
    if (out.val.size() > 0) {
      out.val.images = torch::constant_pad_nd(out.val.images, {2, 2, 2, 2}, 0);
    }
  }
  const auto channels = out.file_backed() ? 3 : out.train.images.size(1);
  if (!d.mean.empty()) {
    mean = d.mean;
    std = d.std;
  }
  if (static_cast<int64_t>(mean.size()) != channels && static_cast<int64_t>(mean.size()) != 3) {
    throw io::ConfigError(fmt::format("dataset.normalize: {} values given, the images have {} "
                                      "channels", mean.size(), channels));
  }
  out.mean = mean;
  out.std = std;
  out.preprocessing.mean = mean;
  out.preprocessing.std = std;
  if (out.file_backed()) {
    if (mean.size() != 3) {
      throw io::ConfigError(fmt::format("dataset.normalize: list-file images are RGB; give 3 "
                                        "values, not {}", mean.size()));
    }
    out.train_transform = ImageTransform::imagenet_train(d.transform.crop_size);
    out.eval_transform = ImageTransform::imagenet_eval(d.transform.crop_size);
    out.eval_transform.resize_size = out.train_transform.resize_size = d.transform.resize_size;
    const double j = d.transform.color_jitter;
    out.train_transform.jitter = ColorJitter{j, j, j, 0.0};
    out.train_transform.train_crop = d.transform.train_crop == "random_crop"
                                         ? TrainCrop::kRandomCrop
                                         : TrainCrop::kRandomResizedCrop;
    out.train_transform.padding = d.transform.padding;
    out.train_transform.range = {d.transform.scale[0], d.transform.scale[1], d.transform.ratio[0],
                                 d.transform.ratio[1]};
    for (auto* t : {&out.train_transform, &out.eval_transform}) {
      t->mean = mean;
      t->std = std;
    }
    out.preprocessing.geometry = Geometry::kResizeCenterCrop;
    out.preprocessing.resize = out.eval_transform.resize_size;
    out.preprocessing.crop = out.eval_transform.crop_size;
    out.workers = static_cast<int>(d.num_workers);
  }
  // List-file datasets are taken as listed (dataset.kwargs.im does not
  // apply): their fingerprint holds the lists' own n_max / n_min.
  const auto [fewest, most] = std::minmax_element(out.class_counts.begin(), out.class_counts.end());
  const double imbalance =
      out.format == "list-file" ? double(*most) / double(*fewest) : d.imbalance_factor;
  out.fingerprint = Fingerprint{d.name, imbalance, seed, static_cast<int64_t>(kept.size()),
                                hash_samples(kept, train_labels)};
  return out;
}

Preprocessing recorded_preprocessing(const io::DatasetConfig& d) {
  const auto name = canonical_name(d.name);
  Preprocessing p;
  std::tie(p.mean, p.std) = default_normalization(name);
  if (!d.mean.empty()) {
    p.mean = d.mean;
    p.std = d.std;
  }
  if (name == "cifar10lt" || name == "cifar100lt") {
    p.height = p.width = 32;
  } else if (name == "fashionmnistlt" || name == "mnistlt") {
    p.channels = 1;
    p.height = p.width = 28;
    p.pad = 2;
  } else if (io::is_list_dataset(d.name)) {
    p.geometry = Geometry::kResizeCenterCrop;
    p.resize = d.transform.resize_size;
    p.crop = d.transform.crop_size;
  } else {
    throw std::invalid_argument(fmt::format(
        "the images' size of dataset '{}' is not recorded (an image folder's images may have "
        "any size)",
        d.name));
  }
  return p;
}

}  // namespace fsa::data
