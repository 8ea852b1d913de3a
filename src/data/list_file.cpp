#include "fsa/data/list_file.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "fsa/io/files.h"

namespace fs = std::filesystem;

namespace fsa::data {
namespace {

/// The most classes a list's labels may imply when dataset.num_classes is 0
/// (iNaturalist 2018 has 8,142; a stray huge label would allocate per class).
constexpr int64_t kMaxInferredClasses = 1'000'000;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

std::vector<int64_t> ListFile::labels() const {
  std::vector<int64_t> out;
  out.reserve(samples.size());
  for (const auto& s : samples) out.push_back(s.label);
  return out;
}

std::vector<int64_t> ListFile::class_counts() const {
  return data::class_counts(labels(), num_classes);
}

ListFile read_list_file(const std::string& path, const ListFileOptions& options) {
  if (const auto problem = io::file_problem(path); !problem.empty()) {
    throw DataError(fmt::format("list file '{}' {}", path, problem));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("cannot open list file '{}'", path));
  ListFile out;
  out.source = path;
  const fs::path root(options.root);
  int64_t max_label = -1;
  // Where each image was first listed: a repeated line is allowed (some
  // over-sample that way) but said; a repeat with another label is refused.
  std::unordered_map<std::string, std::pair<int64_t, int64_t>> first_listed;  // line, label
  int64_t repeats = 0;
  std::pair<int64_t, int64_t> first_repeat;  // line, the line it repeats
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    // A UTF-8 byte-order mark (Windows editors) is not part of the first path.
    if (line_no == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
    const auto text = trim(line);
    if (text.empty()) continue;
    auto bad = [&](const std::string& what) {
      return DataError(fmt::format("list file {}:{}: {} in '{}'; expected 'relative/path label'",
                                   path, line_no, what, std::string(text)));
    };
    if (text.find('\0') != std::string_view::npos) {
      // Paths cannot hold NUL: the OS would silently take the part before it.
      throw DataError(
          fmt::format("list file {}:{}: the line holds a NUL byte (a binary file, or "
                      "a damaged list?); expected 'relative/path label'",
                      path, line_no));
    }
    const auto split = std::find_if(text.rbegin(), text.rend(), is_space);
    if (split == text.rend()) throw bad("no label");
    const auto label_at = static_cast<size_t>(text.rend() - split);
    const auto label_text = text.substr(label_at);
    const auto rel = trim(text.substr(0, label_at));
    int64_t label = -1;
    const auto [end, ec] =
        std::from_chars(label_text.data(), label_text.data() + label_text.size(), label);
    if (ec != std::errc() || end != label_text.data() + label_text.size()) {
      throw bad(fmt::format("label '{}' is not an integer", std::string(label_text)));
    }
    if (label < 0) throw bad(fmt::format("label {} is negative", label));
    if (options.num_classes > 0 && label >= options.num_classes) {
      throw bad(fmt::format("label {} is >= the {} classes", label, options.num_classes));
    }
    if (options.num_classes == 0 && label >= kMaxInferredClasses) {
      throw bad(
          fmt::format("label {} would make {} classes when the count is taken from the "
                      "labels; set dataset.num_classes if that is meant (at most {} are "
                      "inferred)",
                      label, label, kMaxInferredClasses));
    }
    std::string full = options.root.empty() ? std::string(rel) : (root / std::string(rel)).string();
    if (options.check_exists) {
      if (const auto problem = io::file_problem(full); !problem.empty()) {
        throw DataError(fmt::format("list file {}:{}: '{}' {}", path, line_no, full, problem));
      }
    }
    const auto [at, fresh] = first_listed.try_emplace(full, line_no, label);
    if (!fresh) {
      const auto [earlier_line, earlier_label] = at->second;
      if (earlier_label != label) {
        throw DataError(fmt::format(
            "list file {}:{}: '{}' is labelled {} here and {} on line {}; expected one label "
            "per image",
            path, line_no, std::string(rel), label, earlier_label, earlier_line));
      }
      if (repeats++ == 0) first_repeat = {line_no, earlier_line};
    }
    max_label = std::max(max_label, label);
    out.samples.push_back(FileSample{std::move(full), label});
  }
  if (repeats > 0) {
    spdlog::warn(
        "list file '{}': {} line{} repeat an image listed earlier (first: line {} "
        "repeats line {}); each copy is used as a separate image",
        path, repeats, repeats == 1 ? "" : "s", first_repeat.first, first_repeat.second);
  }
  if (in.bad()) throw DataError(fmt::format("error reading list file '{}'", path));
  if (out.samples.empty()) throw DataError(fmt::format("list file '{}' lists no images", path));
  out.num_classes = options.num_classes > 0 ? options.num_classes : max_label + 1;
  return out;
}

std::vector<int64_t> read_npy_int64(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("cannot open NumPy file '{}'", path));
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  auto bad = [&](const std::string& what) {
    return DataError(fmt::format("NumPy file '{}': {}", path, what));
  };
  // Magic \x93NUMPY, version major/minor, header length (u16 in 1.x, u32 after).
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) {
    throw bad("not a .npy file (no \\x93NUMPY magic)");
  }
  const auto major = static_cast<uint8_t>(bytes[6]);
  size_t header_len = 0, offset = 0;
  auto byte = [&](size_t i) { return static_cast<size_t>(static_cast<uint8_t>(bytes[i])); };
  if (major == 1) {
    header_len = byte(8) | (byte(9) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw bad("truncated header");
    header_len = byte(8) | (byte(9) << 8) | (byte(10) << 16) | (byte(11) << 24);
    offset = 12;
  } else {
    throw bad(fmt::format("format version {} is not supported", major));
  }
  if (bytes.size() < offset + header_len) throw bad("truncated header");
  std::string header = bytes.substr(offset, header_len);
  header.erase(
      std::remove_if(header.begin(), header.end(), [](char c) { return c == ' ' || c == '\n'; }),
      header.end());
  // The header is a Python dict literal, e.g.
  // {'descr':'<i8','fortran_order':False,'shape':(1000,),}
  auto value_of = [&](const std::string& key) -> std::string {
    const auto at = header.find("'" + key + "':");
    if (at == std::string::npos) throw bad(fmt::format("header has no '{}'", key));
    const auto start = at + key.size() + 3;
    if (start < header.size() && header[start] == '(') {
      return header.substr(start, header.find(')', start) + 1 - start);
    }
    return header.substr(start, header.find(',', start) - start);
  };
  const auto descr = value_of("descr");
  if (descr != "'<i8'")
    throw bad(fmt::format("dtype {} is not little-endian int64 ('<i8')", descr));
  if (value_of("fortran_order") != "False") throw bad("Fortran order is not supported");
  const auto shape = value_of("shape");
  // A 1-D shape is written "(N,)".
  int64_t n = -1;
  const auto [end, ec] = std::from_chars(shape.data() + 1, shape.data() + shape.size(), n);
  if (shape.size() < 4 || ec != std::errc() || std::string(end) != ",)" || n < 0) {
    throw bad(fmt::format("shape {} is not one-dimensional", shape));
  }
  const size_t data_at = offset + header_len;
  if (bytes.size() - data_at != static_cast<size_t>(n) * 8) {
    throw bad(fmt::format("holds {} data bytes, shape {} needs {}", bytes.size() - data_at, shape,
                          n * 8));
  }
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (size_t i = 0; i < out.size(); ++i) {
    uint64_t v = 0;
    for (int b = 7; b >= 0; --b) v = (v << 8) | byte(data_at + 8 * i + size_t(b));
    out[i] = static_cast<int64_t>(v);
  }
  return out;
}

ClassStats class_stats(const std::vector<int64_t>& counts, double head_ratio,
                       const std::vector<int64_t>& explicit_head) {
  ClassStats s;
  s.counts = counts;
  s.head = head_classes(counts, head_ratio, explicit_head);
  if (!counts.empty()) {
    s.min_count = *std::min_element(counts.begin(), counts.end());
    s.max_count = *std::max_element(counts.begin(), counts.end());
  }
  for (size_t c = 0; c < counts.size(); ++c) {
    s.total += counts[c];
    s.groups.push_back(shot_group(counts[c]));
    switch (s.groups.back()) {
      case ShotGroup::kMany:
        ++s.num_many;
        break;
      case ShotGroup::kMedium:
        ++s.num_medium;
        break;
      case ShotGroup::kFew:
        ++s.num_few;
        break;
    }
    if (s.head[c]) ++s.num_head;
  }
  return s;
}

ListDataset read_list_dataset(const io::DatasetConfig& d, const io::FinetuneConfig& split,
                              bool check_exists) {
  if (!io::is_list_dataset(d.name)) {
    throw io::ConfigError(fmt::format("dataset.name '{}' is not a list-file dataset", d.name));
  }
  auto list_path = [&](const std::string& list) {
    const fs::path p(list);
    return p.is_absolute() || d.root.empty() ? list : (fs::path(d.root) / p).string();
  };
  ListDataset out;
  out.train = read_list_file(list_path(d.train_list), {d.root, check_exists, d.num_classes});
  const ListFileOptions rest{d.root, check_exists, out.train.num_classes};
  out.test = read_list_file(list_path(d.test_list), rest);
  if (!d.val_list.empty()) {
    std::error_code ec;
    if (fs::equivalent(list_path(d.val_list), list_path(d.train_list), ec)) {
      throw io::ConfigError(fmt::format(
          "dataset.val_list '{}' is the training list; expected a list of held-out images (or "
          "dataset.val_fraction to hold some out of training)",
          d.val_list));
    }
    out.val = read_list_file(list_path(d.val_list), rest);
  }
  // Images in both training and an evaluation split make that split's
  // figures optimistic; the validation split also chooses the best epoch.
  std::unordered_set<std::string> training;
  for (const auto& sample : out.train.samples) training.insert(sample.path);
  using Split = std::pair<const ListFile*, const char*>;
  for (const auto& [list, what] : {Split{&out.val, "validation"}, Split{&out.test, "test"}}) {
    int64_t shared = 0;
    for (const auto& sample : list->samples) shared += training.count(sample.path) > 0;
    if (shared > 0) {
      spdlog::warn(
          "list file '{}': {} of its {} {} images are also training images (in '{}'); "
          "their {} figures are measured on images the network trained on",
          list->source, shared, list->samples.size(), what, out.train.source, what);
    }
  }
  const auto counts = out.train.class_counts();
  for (size_t c = 0; c < counts.size(); ++c) {
    if (counts[c] == 0) {
      throw DataError(fmt::format("list file '{}': class {} of {} has no training images",
                                  out.train.source, c, counts.size()));
    }
  }
  try {
    out.stats = class_stats(counts, split.head_ratio, split.head_classes);
  } catch (const std::invalid_argument& e) {
    throw io::ConfigError(e.what());
  }
  return out;
}

}  // namespace fsa::data
