#include "fsa/io/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <set>

#include "fsa/io/files.h"

namespace fsa::io {
namespace {

std::string join_key(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

/// Whether doc[keys[0]][keys[1]]... is there, without inserting anything
/// (yaml-cpp's operator[] on a missing key yields a node that throws).
bool has_path(const YAML::Node& doc, std::initializer_list<const char*> keys) {
  YAML::Node n;
  n.reset(doc);
  for (const char* key : keys) {
    if (!n.IsMap()) return false;
    const YAML::Node& map = n;
    const YAML::Node next = map[key];
    if (!next.IsDefined()) return false;
    n.reset(next);
  }
  return true;
}

/// Reads one YAML map strictly: every key must be read or declared, and every
/// value must parse as the requested type.
class MapReader {
 public:
  MapReader(YAML::Node node, std::string prefix, std::string source,
            std::shared_ptr<std::vector<std::string>> notices =
                std::make_shared<std::vector<std::string>>())
      : node_(std::move(node)),
        prefix_(std::move(prefix)),
        source_(std::move(source)),
        notices_(std::move(notices)) {
    if (node_ && !node_.IsNull() && !node_.IsMap()) {
      fail(prefix_.empty() ? "<document>" : prefix_, "a mapping of keys to values");
    }
  }

  [[noreturn]] void fail(const std::string& key, const std::string& expected) const {
    throw ConfigError(fmt::format("config {}: key '{}': expected {}", source_, key, expected));
  }

  bool has(const std::string& key) {
    seen_.insert(key);
    return node_ && node_.IsMap() && node_[key] && !node_[key].IsNull();
  }

  template <typename T>
  T get(const std::string& key, T fallback, const char* expected) {
    if (!has(key)) return fallback;
    const YAML::Node v = node_[key];
    try {
      if (!v.IsScalar()) fail(join_key(prefix_, key), expected);
      return v.as<T>();
    } catch (const YAML::Exception&) {
      fail(join_key(prefix_, key), fmt::format("{}, got '{}'", expected, v.Scalar()));
    }
  }

  int64_t get_int(const std::string& key, int64_t fallback, int64_t min_value) {
    const auto v = get<int64_t>(key, fallback, "an integer");
    if (v < min_value) {
      fail(join_key(prefix_, key), fmt::format("an integer >= {}, got {}", min_value, v));
    }
    return v;
  }

  double get_double(const std::string& key, double fallback) {
    const auto v = get<double>(key, fallback, "a number");
    if (!std::isfinite(v)) fail(join_key(prefix_, key), "a finite number");
    return v;
  }

  bool get_bool(const std::string& key, bool fallback) {
    return get<bool>(key, fallback, "true or false");
  }

  std::string get_string(const std::string& key, const std::string& fallback) {
    return get<std::string>(key, fallback, "a string");
  }

  template <typename T>
  std::vector<T> get_list(const std::string& key, const char* expected) {
    if (!has(key)) return {};
    const YAML::Node v = node_[key];
    if (!v.IsSequence()) fail(join_key(prefix_, key), expected);
    std::vector<T> out;
    for (const auto& item : v) {
      try {
        out.push_back(item.as<T>());
      } catch (const YAML::Exception&) {
        fail(join_key(prefix_, key), expected);
      }
    }
    return out;
  }

  MapReader child(const std::string& key) {
    seen_.insert(key);
    YAML::Node sub = node_ && node_.IsMap() ? node_[key] : YAML::Node();
    return MapReader(sub, join_key(prefix_, key), source_, notices_);
  }

  void ignore(const std::string& key) { seen_.insert(key); }

  /// A key of the reference implementation's configs that fsa reads elsewhere
  /// or not at all: accepted, and when present `instead` (what fsa does) is
  /// kept for Config::notices. Returns whether the key is present.
  bool notice(const std::string& key, const std::string& instead) {
    seen_.insert(key);
    if (!(node_ && node_.IsMap() && node_[key])) return false;
    notices_->push_back(fmt::format("'{}': {}", join_key(prefix_, key), instead));
    return true;
  }

  const std::vector<std::string>& notices() const { return *notices_; }

  /// True if `key` holds a mapping (a section), false if absent or a scalar.
  bool is_map(const std::string& key) const {
    return node_ && node_.IsMap() && node_[key] && node_[key].IsMap();
  }

  /// Throws on the first key that was never read.
  void finish() const {
    if (!node_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      const auto key = kv.first.as<std::string>();
      if (!seen_.count(key)) {
        throw ConfigError(
            fmt::format("config {}: unknown key '{}'", source_, join_key(prefix_, key)));
      }
    }
  }

  const std::string& prefix() const { return prefix_; }

 private:
  YAML::Node node_;
  std::string prefix_;
  std::string source_;
  std::set<std::string> seen_;
  std::shared_ptr<std::vector<std::string>> notices_;  // shared by a reader and its children
};

/// More threads than any machine fsa runs on has cores: OpenMP would start
/// them all (2,000 threads took minutes before the first line).
constexpr int64_t kMaxThreads = 1024;

void parse_optimizer(MapReader r, OptimizerConfig& o) {
  o.name = r.get_string("name", o.name);
  if (o.name != "SGD" && o.name != "Adam" && o.name != "AdamW") {
    r.fail(join_key(r.prefix(), "name"), fmt::format("SGD, Adam or AdamW, got '{}'", o.name));
  }
  auto k = r.child("kwargs");
  // LibTorch keeps these as float: larger values would fail later, raw.
  constexpr double kFloatMax = 3.4e38;
  o.lr = k.get_double("lr", o.lr);
  if (o.lr <= 0 || o.lr > kFloatMax) {
    k.fail(join_key(k.prefix(), "lr"), fmt::format("a positive learning rate, got {}", o.lr));
  }
  o.weight_decay = k.get_double("weight_decay", o.weight_decay);
  if (o.weight_decay < 0 || o.weight_decay > kFloatMax) {
    k.fail(join_key(k.prefix(), "weight_decay"),
           fmt::format("a number >= 0, got {}", o.weight_decay));
  }
  if (o.name == "SGD") {
    o.momentum = k.get_double("momentum", o.momentum);
    if (o.momentum < 0 || o.momentum >= 1) {
      k.fail(join_key(k.prefix(), "momentum"),
             fmt::format("a momentum in [0, 1) (1 and above never forget a gradient), got {}",
                         o.momentum));
    }
    o.nesterov = k.get_bool("nesterov", o.nesterov);
    if (o.nesterov && o.momentum == 0) {
      k.fail(join_key(k.prefix(), "nesterov"),
             "false, or a momentum > 0 (Nesterov momentum "
             "needs momentum)");
    }
  } else {
    o.eps = k.get_double("eps", o.eps);
    if (o.eps < 0) k.fail(join_key(k.prefix(), "eps"), fmt::format("a number >= 0, got {}", o.eps));
    const auto betas = k.get_list<double>("betas", "a list of two numbers");
    if (!betas.empty()) {
      if (betas.size() != 2) k.fail(join_key(k.prefix(), "betas"), "a list of two numbers");
      o.beta1 = betas[0];
      o.beta2 = betas[1];
      for (const double b : betas) {
        if (!(b >= 0 && b < 1)) {
          k.fail(join_key(k.prefix(), "betas"),
                 fmt::format("two numbers in [0, 1), got [{}, {}]", o.beta1, o.beta2));
        }
      }
    }
  }
  k.finish();
  r.finish();
}

void parse_scheduler(MapReader r, SchedulerConfig& s) {
  s.name = r.get_string("name", s.name);
  static const std::set<std::string> known{"warmup", "MultiStepLR", "StepLR", "CosineAnnealingLR",
                                           "constant"};
  if (!known.count(s.name)) {
    r.fail(join_key(r.prefix(), "name"),
           fmt::format("warmup, MultiStepLR, StepLR, CosineAnnealingLR or constant, got '{}'",
                       s.name));
  }
  auto k = r.child("kwargs");
  s.gamma = k.get_double("gamma", s.gamma);
  if (s.gamma <= 0) k.fail(join_key(k.prefix(), "gamma"), "a positive factor");
  if (s.name == "warmup" || s.name == "MultiStepLR") {
    auto m = k.get_list<int64_t>("milestones", "a list of epochs");
    if (!m.empty()) s.milestones = m;
    for (size_t i = 0; i < s.milestones.size(); ++i) {
      if (s.milestones[i] < 0 || (i > 0 && s.milestones[i] <= s.milestones[i - 1])) {
        k.fail(join_key(k.prefix(), "milestones"), "increasing epochs >= 0");
      }
    }
  }
  if (s.name == "StepLR") s.step_size = k.get_int("step_size", s.step_size, 1);
  if (s.name == "CosineAnnealingLR") {
    s.t_max = k.get_int("T_max", s.t_max, 0);
    s.eta_min = k.get_double("eta_min", s.eta_min);
    if (s.eta_min < 0) k.fail(join_key(k.prefix(), "eta_min"), "a learning rate >= 0");
  }
  if (s.name == "warmup") {
    s.warmup_epochs = k.get_int("warmup_epochs", s.warmup_epochs, 0);
    s.warmup_factor = k.get_double("warmup_factor", s.warmup_factor);
    if (s.warmup_factor <= 0 || s.warmup_factor > 1) {
      k.fail(join_key(k.prefix(), "warmup_factor"), "a number in (0, 1]");
    }
  }
  k.finish();
  r.finish();
}

/// test.loss: the reference's key; only softmax cross-entropy is evaluated.
void check_test_loss(MapReader& r) {
  const auto loss = r.get_string("loss", "SoftmaxCrossEntropy");
  if (loss != "SoftmaxCrossEntropy") {
    r.fail(join_key(r.prefix(), "loss"), fmt::format("SoftmaxCrossEntropy, got '{}'", loss));
  }
}

/// train.loss: a name, or a mapping of a name and that loss's keys. A key
/// the named loss does not use is an error, not silently ignored.
void parse_loss(MapReader& t, LossConfig& l) {
  auto canonical = [](std::string name) {
    return name == "SoftmaxCrossEntropy" ? std::string("cross_entropy") : name;
  };
  const std::string known =
      "cross_entropy (or SoftmaxCrossEntropy), focal, ldam or "
      "balanced_softmax";
  auto check_name = [&](MapReader& r, const std::string& key) {
    if (l.name != "cross_entropy" && l.name != "focal" && l.name != "ldam" &&
        l.name != "balanced_softmax") {
      r.fail(key, fmt::format("{}, got '{}'", known, l.name));
    }
  };
  if (!t.is_map("loss")) {
    l.name = canonical(t.get_string("loss", l.name));
    check_name(t, "train.loss");
    return;
  }
  auto r = t.child("loss");
  l.name = canonical(r.get_string("name", l.name));
  check_name(r, "train.loss.name");
  auto only_for = [&](const std::string& key, const std::string& loss) {
    if (l.name != loss && r.has(key)) {
      r.fail("train.loss." + key,
             fmt::format("no value: only the {} loss has it, this is {}", loss, l.name));
    }
  };
  only_for("gamma", "focal");
  only_for("max_margin", "ldam");
  only_for("scale", "ldam");
  l.gamma = r.get_double("gamma", l.gamma);
  if (l.gamma < 0) r.fail("train.loss.gamma", fmt::format("a number >= 0, got {}", l.gamma));
  l.max_margin = r.get_double("max_margin", l.max_margin);
  if (l.max_margin <= 0) {
    r.fail("train.loss.max_margin", fmt::format("a positive margin, got {}", l.max_margin));
  }
  l.scale = r.get_double("scale", l.scale);
  if (l.scale <= 0) r.fail("train.loss.scale", fmt::format("a positive scale, got {}", l.scale));
  l.weighting = r.get_string("weighting", l.weighting);
  if (l.weighting != "none" && l.weighting != "class_balanced" && l.weighting != "drw") {
    r.fail("train.loss.weighting",
           fmt::format("none, class_balanced or drw, got '{}'", l.weighting));
  }
  if (l.weighting == "none" && r.has("beta")) {
    r.fail("train.loss.beta", "no value: weighting is none (set weighting: class_balanced or drw)");
  }
  if (l.weighting != "drw" && r.has("drw_epoch")) {
    r.fail("train.loss.drw_epoch", fmt::format("no value: weighting is {}, not drw", l.weighting));
  }
  l.beta = r.get_double("beta", l.beta);
  if (l.beta < 0 || l.beta >= 1) {
    r.fail("train.loss.beta", fmt::format("a number in [0, 1), got {}", l.beta));
  }
  l.drw_epoch = r.get_int("drw_epoch", l.drw_epoch, 0);
  r.finish();
}

void parse_sampler(MapReader& t, SamplerConfig& s) {
  s.name = t.get_string("sampler", s.name);
  if (s.name != "instance_balanced" && s.name != "class_balanced" && s.name != "square_root" &&
      s.name != "progressive") {
    t.fail("train.sampler", fmt::format("instance_balanced, class_balanced, square_root or "
                                        "progressive, got '{}'",
                                        s.name));
  }
}

YAML::Node merge(const YAML::Node& base, const YAML::Node& over) {
  if (!base || !base.IsMap() || !over.IsMap()) return YAML::Clone(over);
  YAML::Node out = YAML::Clone(base);
  for (const auto& kv : over) {
    const auto key = kv.first.as<std::string>();
    out[key] = out[key] ? merge(out[key], kv.second) : YAML::Clone(kv.second);
  }
  return out;
}

/// The phase sections of a pipeline file; `decouple` is `fsa decouple`'s.
const std::vector<std::string> kPhases{"phase_i", "phase_ii", "phase_iii", "decouple"};

std::string canonical_dataset_name(const std::string& name) {
  std::string out;
  for (char ch : name) {
    if (ch != '-' && ch != '_' && ch != ' ') out += static_cast<char>(std::tolower(ch));
  }
  return out;
}

/// Classes of the named list-file datasets (0: from the labels).
int64_t list_dataset_classes(const std::string& name) {
  const auto n = canonical_dataset_name(name);
  if (n == "imagenetlt") return 1000;
  if (n == "placeslt") return 365;
  if (n == "inaturalistlt") return 8142;  // iNaturalist 2018
  return 0;
}

/// The keys of list-file datasets; any of them on another dataset is an error.
void parse_list_dataset(MapReader& d, DatasetConfig& ds) {
  const std::vector<std::string> keys{"train_list",  "val_list",    "test_list",
                                      "num_classes", "num_workers", "transform"};
  if (!is_list_dataset(ds.name)) {
    for (const auto& key : keys) {
      if (d.has(key)) {
        d.fail(join_key("dataset", key),
               fmt::format("no value: '{}' is not a list-file dataset (ImageNet-LT, Places-LT, "
                           "iNaturalist-LT, ListFile-LT)",
                           ds.name));
      }
    }
    return;
  }
  // The split lists' names where the reference implementation (and the
  // literature's releases) put them, under dataset.root.
  const auto n = canonical_dataset_name(ds.name);
  const std::string prefix = n == "imagenetlt" ? "ImageNet_LT_"
                             : n == "placeslt" ? "Places_LT_"
                                               : "";
  ds.train_list = d.get_string("train_list", ds.train_list);
  ds.val_list = d.get_string("val_list", ds.val_list);
  ds.test_list = d.get_string("test_list", ds.test_list);
  if (!prefix.empty() && ds.train_list.empty() && ds.test_list.empty() && ds.val_list.empty()) {
    ds.train_list = prefix + "train.txt";
    ds.test_list = prefix + "test.txt";
    if (ds.val_fraction == 0) ds.val_list = prefix + "val.txt";
  }
  if (ds.train_list.empty()) d.fail("dataset.train_list", "the training split list");
  if (ds.test_list.empty()) d.fail("dataset.test_list", "the test split list");
  ds.num_classes = d.get_int("num_classes", list_dataset_classes(ds.name), 0);
  ds.num_workers = d.get_int("num_workers", ds.num_workers, 0);
  if (ds.num_workers > kMaxThreads) {
    d.fail("dataset.num_workers",
           fmt::format("at most {} decoding threads, got {}", kMaxThreads, ds.num_workers));
  }
  auto t = d.child("transform");
  ds.transform.crop_size = t.get_int("crop_size", ds.transform.crop_size, 1);
  ds.transform.resize_size = t.get_int("resize_size", ds.transform.resize_size, 1);
  if (ds.transform.resize_size < ds.transform.crop_size) {
    t.fail("dataset.transform.resize_size",
           fmt::format("a size >= crop_size {}, got {}", ds.transform.crop_size,
                       ds.transform.resize_size));
  }
  ds.transform.color_jitter = t.get_double("color_jitter", ds.transform.color_jitter);
  if (ds.transform.color_jitter < 0) t.fail("dataset.transform.color_jitter", "a number >= 0");
  auto& tr = ds.transform;
  tr.train_crop = t.get_string("train_crop", tr.train_crop);
  if (tr.train_crop != "random_resized_crop" && tr.train_crop != "random_crop") {
    t.fail("dataset.transform.train_crop",
           fmt::format("random_resized_crop or random_crop, got '{}'", tr.train_crop));
  }
  auto range = [&](const char* key, std::vector<double>& v, double upper) {
    if (!t.has(key)) return;
    v = t.get_list<double>(key, "a list of two numbers [min, max]");
    if (v.size() != 2 || !(v[0] > 0) || v[0] > v[1] || v[1] > upper) {
      t.fail(fmt::format("dataset.transform.{}", key),
             upper < 2 ? "[min, max] with 0 < min <= max <= 1" : "[min, max] with 0 < min <= max");
    }
  };
  range("scale", tr.scale, 1.0);
  range("ratio", tr.ratio, 1e9);
  tr.padding = t.get_int("padding", tr.padding, 0);  // resize_size >= crop_size: always fits
  t.finish();
}

}  // namespace

bool is_list_dataset(const std::string& name) {
  const auto n = canonical_dataset_name(name);
  return n == "imagenetlt" || n == "placeslt" || n == "inaturalistlt" || n == "listfilelt";
}

namespace {

constexpr int kMaxYamlDepth = 64;           // fsa's own configs nest 4 deep
constexpr int64_t kMaxYamlValues = 100000;  // the largest shipped config has ~100

/// Checks a parsed YAML document's structure before anything reads it:
/// every mapping key is a plain scalar given once (yaml-cpp keeps a repeated
/// key and a lookup would silently take one of them), nesting stays under
/// kMaxYamlDepth and the document under kMaxYamlValues values. An alias
/// that contains itself (`a: &x [*x]`) or aliases nested inside aliases
/// (a "billion laughs" file) would otherwise recurse without end or expand
/// for minutes. Throws ConfigError naming `source`, the key and line.
class YamlStructureCheck {
 public:
  explicit YamlStructureCheck(std::string source) : source_(std::move(source)) {}

  void operator()(const YAML::Node& node, const std::string& prefix, int depth = 0) {
    if (++values_ > kMaxYamlValues) {
      fail(prefix, fmt::format("a document of at most {} values; aliases (*name) inside "
                               "aliases expand it beyond that",
                               kMaxYamlValues));
    }
    if (depth > kMaxYamlDepth) {
      fail(prefix, fmt::format("at most {} nested levels; an alias (*name) that refers to "
                               "its own anchor nests without end",
                               kMaxYamlDepth));
    }
    if (node.IsSequence()) {
      for (const auto& item : node) (*this)(item, prefix, depth + 1);
      return;
    }
    if (!node.IsMap()) return;
    std::set<std::string> seen;
    for (const auto& kv : node) {
      const auto line = kv.first.Mark().line + 1;
      if (!kv.first.IsScalar()) {
        throw ConfigError(fmt::format(
            "config {}: line {}{}: expected a plain key (a name), got a {} as a key (YAML's "
            "'? ' complex key)",
            source_, line, prefix.empty() ? "" : ", under '" + prefix + "'",
            kv.first.IsSequence() ? "list" : "mapping"));
      }
      const auto key = kv.first.Scalar();
      const auto full = prefix.empty() ? key : prefix + "." + key;
      if (!seen.insert(key).second) {
        throw ConfigError(
            fmt::format("config {}: key '{}' is given twice (again at line {}); "
                        "expected each key once",
                        source_, full, line));
      }
      (*this)(kv.second, full, depth + 1);
    }
  }

 private:
  [[noreturn]] void fail(const std::string& prefix, const std::string& expected) const {
    throw ConfigError(fmt::format("config {}: {}: expected {}", source_,
                                  prefix.empty() ? "the document" : "key '" + prefix + "'",
                                  expected));
  }

  std::string source_;
  int64_t values_ = 0;
};

}  // namespace

YAML::Node load_yaml_file(const std::string& path) {
  if (const auto problem = file_problem(path); !problem.empty()) {
    throw ConfigError(fmt::format("config file '{}' {}", path, problem));
  }
  try {
    YAML::Node doc = YAML::LoadFile(path);
    if (doc.IsNull()) return YAML::Node(YAML::NodeType::Map);
    if (!doc.IsMap()) throw ConfigError(fmt::format("config {}: expected a mapping of keys", path));
    YamlStructureCheck{path}(doc, "");
    return doc;
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("config {}: not valid YAML at line {}, column {}: {}", path,
                                  e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

namespace {

/// Sets doc[parts[0]]...[parts.back()] = value, making missing mappings.
void set_at(YAML::Node doc, const std::vector<std::string>& parts, const YAML::Node& value,
            const std::string& override_text) {
  // Walk with explicit node copies: yaml-cpp's operator= on a Node
  // reference would rebind, not descend.
  std::vector<YAML::Node> path{doc};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (parts[i].empty()) {
      throw ConfigError(fmt::format("override '{}': empty key part", override_text));
    }
    YAML::Node next = path.back()[parts[i]];
    if (!next.IsDefined() || next.IsNull()) {
      path.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next = path.back()[parts[i]];
    } else if (!next.IsMap()) {
      throw ConfigError(
          fmt::format("override '{}': '{}' is not a mapping", override_text, parts[i]));
    }
    path.push_back(next);
  }
  path.back()[parts.back()] = value;
}

/// True if doc[parts[0]]...[parts.back()] exists.
bool has_path(const YAML::Node& doc, const std::vector<std::string>& parts) {
  std::vector<YAML::Node> path{doc};
  for (const auto& part : parts) {
    if (!path.back().IsMap()) return false;
    YAML::Node next = path.back()[part];
    if (!next.IsDefined()) return false;
    path.push_back(next);
  }
  return true;
}

/// True if doc[parts[0]]...[parts.back()] exists and is a mapping.
bool is_section(const YAML::Node& doc, const std::vector<std::string>& parts) {
  std::vector<YAML::Node> path{doc};  // node copies: assigning a Node would rebind it
  for (const auto& part : parts) {
    if (!path.back().IsMap()) return false;
    YAML::Node next = path.back()[part];
    if (!next.IsDefined()) return false;
    path.push_back(next);
  }
  return path.back().IsMap();
}

}  // namespace

void apply_overrides(YAML::Node& doc, const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw ConfigError(fmt::format("override '{}': expected key=value with a dotted key", o));
    }
    const std::string key = o.substr(0, eq);
    YAML::Node value;
    try {
      // "key=" is an empty string, not YAML's null: a number, list or mapping
      // key then fails its type check instead of silently falling back to its
      // default (write key=null for null).
      const auto text = o.substr(eq + 1);
      value = text.empty() ? YAML::Node(std::string()) : YAML::Load(text);
      YamlStructureCheck{"override '" + o + "'"}(value, o.substr(0, eq));
    } catch (const YAML::Exception& e) {
      throw ConfigError(fmt::format("override '{}': value is not valid YAML: {}", o, e.msg));
    }
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
      const auto dot = key.find('.', start);
      parts.push_back(key.substr(start, dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    // A mapping replaced by null would silently fall back to every default
    // of that section (`--set train=null`).
    bool section = is_section(doc, parts);
    for (const auto& phase : kPhases) {
      const YAML::Node phase_node = doc[phase];
      section = section || (phase_node.IsDefined() && is_section(phase_node, parts));
    }
    if (value.IsNull() && section) {
      throw ConfigError(
          fmt::format("override '{}': '{}' is a section of keys; set its keys "
                      "one by one instead of replacing it with null",
                      o, key));
    }
    set_at(doc, parts, value, o);
    // In a pipeline file a phase's own setting wins over the top level, so a
    // top-level override also replaces the key where a phase section sets it:
    // `--set train.num_epoch=1` means every phase (phase_i.train... one phase).
    if (std::find(kPhases.begin(), kPhases.end(), parts.front()) == kPhases.end()) {
      for (const auto& phase : kPhases) {
        auto section = doc[phase];
        if (section.IsDefined() && section.IsMap() && has_path(section, parts)) {
          set_at(section, parts, value, o);
        }
      }
    }
  }
}

bool is_pipeline(const YAML::Node& doc) {
  for (const auto& p : kPhases) {
    if (doc[p]) return true;
  }
  return false;
}

YAML::Node phase_document(const YAML::Node& doc, const std::string& phase) {
  if (!is_pipeline(doc)) return YAML::Clone(doc);
  YAML::Node shared(YAML::NodeType::Map);
  for (const auto& kv : doc) {
    const auto key = kv.first.as<std::string>();
    if (std::find(kPhases.begin(), kPhases.end(), key) == kPhases.end()) {
      shared[key] = YAML::Clone(kv.second);
    }
  }
  const YAML::Node section = doc[phase];
  if (!section || section.IsNull()) return shared;
  if (!section.IsMap()) throw ConfigError(fmt::format("key '{}': expected a mapping", phase));
  return merge(shared, section);
}

bool native_bf16_cpu() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") != 0;
#else
  return false;
#endif
}

Config parse_config(const YAML::Node& doc, const std::string& source) {
  Config c;
  c.source = source;
  MapReader r(doc, "", source);
  if (r.has("random_seed")) {
    c.random_seed = r.get<uint64_t>("random_seed", 0, "a non-negative integer or null");
  } else if (doc["random_seed"] && doc["random_seed"].IsNull()) {
    c.random_seed.reset();
  }
  c.device = r.get_string("device", c.device);
  c.threads = r.get_int("threads", c.threads, 0);
  if (c.threads > kMaxThreads) {
    r.fail("threads",
           fmt::format("0 (every core) or at most {} threads, got {}", kMaxThreads, c.threads));
  }
  // "auto": the fast options where they are measured to keep accuracy
  // (docs/RESULTS.md, the bf16 CE row): a CPU with native bfloat16.
  const bool cpu = c.device.rfind("cpu", 0) == 0;
  const bool fast = cpu && native_bf16_cpu();
  c.precision = r.get_string("precision", "auto");
  if (c.precision != "auto" && c.precision != "fp32" && c.precision != "bf16-mixed") {
    r.fail("precision", fmt::format("auto, fp32 or bf16-mixed, got '{}'", c.precision));
  }
  c.precision_auto = c.precision == "auto";
  if (c.precision_auto) c.precision = fast ? "bf16-mixed" : "fp32";
  c.memory_format = r.get_string("memory_format", "auto");
  if (c.memory_format != "auto" && c.memory_format != "contiguous" &&
      c.memory_format != "channels_last") {
    r.fail("memory_format",
           fmt::format("auto, contiguous or channels_last, got '{}'", c.memory_format));
  }
  c.memory_format_auto = c.memory_format == "auto";
  if (c.memory_format_auto) {  // NHWC goes with bfloat16 on the CPU (the measured pair)
    c.memory_format = cpu && c.precision == "bf16-mixed" ? "channels_last" : "contiguous";
  }
  // The reference implementation's keys that fsa takes elsewhere (README,
  // "Configs of the reference implementation").
  r.notice("phase", "the command chooses the phase here (fsa train, extract, finetune, run)");
  r.notice("tensorboard",
           "TensorBoard scalars are always written to the run folder (--out), tb/ inside it");
  r.notice("vis", "class activation maps and fused samples are drawn by `fsa visualize`");
  std::string reference_cam_layer;  // finetune.cam_layer, read before the feature section

  {
    auto d = r.child("dataset");
    c.dataset.name = d.get_string("name", c.dataset.name);
    if (canonical_dataset_name(c.dataset.name) == "example") {
      d.fail("dataset.name",
             "a dataset fsa knows; 'example' is the reference implementation's sample "
             "dataset: fsa's nearest is ImageFolder-LT (dataset.root holding train/ and test/ "
             "folders of one folder per class)");
    }
    c.dataset.root = d.get_string("root", c.dataset.root);
    auto k = d.child("kwargs");
    c.dataset.imbalance_factor = k.get_double("im", c.dataset.imbalance_factor);
    if (c.dataset.imbalance_factor < 1) {
      k.fail("dataset.kwargs.im",
             fmt::format("an imbalance factor >= 1, got {}", c.dataset.imbalance_factor));
    }
    k.finish();
    auto n = d.child("normalize");
    c.dataset.mean = n.get_list<double>("mean", "a list of per-channel means");
    c.dataset.std = n.get_list<double>("std", "a list of per-channel standard deviations");
    for (double s : c.dataset.std) {
      if (s <= 0) n.fail("dataset.normalize.std", "positive standard deviations");
    }
    if (c.dataset.mean.size() != c.dataset.std.size()) {
      n.fail("dataset.normalize", "mean and std of the same length");
    }
    n.finish();
    c.dataset.max_test_per_class = d.get_int("max_test_per_class", 0, 0);
    c.dataset.skip_corrupt = d.get_bool("skip_corrupt", c.dataset.skip_corrupt);
    c.dataset.val_fraction = d.get_double("val_fraction", 0);
    if (!(c.dataset.val_fraction >= 0 && c.dataset.val_fraction <= 0.5)) {
      d.fail("dataset.val_fraction", fmt::format("a fraction in [0, 0.5] of each class's training "
                                                 "images, got {}",
                                                 c.dataset.val_fraction));
    }
    parse_list_dataset(d, c.dataset);
    if (c.dataset.val_fraction > 0 && !c.dataset.val_list.empty()) {
      d.fail("dataset.val_fraction",
             "0 when dataset.val_list names the validation split "
             "(give one of the two)");
    }
    d.finish();
  }
  {
    auto m = r.child("model");
    c.model.name = m.get_string("name", c.model.name);
    c.model.classifier = m.get_string("classifier", c.model.classifier);
    if (c.model.classifier != "linear" && c.model.classifier != "cosine") {
      m.fail("model.classifier", fmt::format("linear or cosine, got '{}'", c.model.classifier));
    }
    c.model.pretrained = m.get_string("pretrained", "");
    if (c.model.pretrained == "false") c.model.pretrained.clear();
    if (c.model.pretrained == "true") {
      m.fail("model.pretrained",
             "the path of a torch.save file of weights, or false (fsa downloads nothing: save "
             "torchvision's weights with torch.save(model.state_dict(), 'resnet.pth') and give "
             "that file)");
    }
    auto k = m.child("kwargs");
    if (k.get_bool("pretrained", false)) {  // the reference implementation's switch
      k.fail("model.kwargs.pretrained",
             "false (fsa downloads nothing; give model.pretrained: PATH, a torch.save file of "
             "the weights)");
    }
    k.notice("pretrained", "false is the default; weights are given as model.pretrained: PATH");
    k.finish();
    m.finish();
  }
  {
    auto t = r.child("train");
    c.train.num_epoch = t.get_int("num_epoch", c.train.num_epoch, 1);
    c.train.batch_size = t.get_int("batch_size", c.train.batch_size, 1);
    parse_loss(t, c.train.loss);
    parse_sampler(t, c.train.sampler);
    if (c.train.loss.weighting == "drw" && c.train.loss.drw_epoch >= c.train.num_epoch) {
      t.fail("train.loss.drw_epoch",
             fmt::format("an epoch before train.num_epoch = {} (deferred re-weighting would "
                         "never start), got {}",
                         c.train.num_epoch, c.train.loss.drw_epoch));
    }
    if (t.has("gradient_clip")) {
      c.train.gradient_clip = t.get_double("gradient_clip", 0);
      if (*c.train.gradient_clip <= 0) t.fail("train.gradient_clip", "a positive norm or null");
    }
    parse_optimizer(t.child("optimizer"), c.train.optimizer);
    if (t.has("lr")) {  // the reference's Phase III learning rate
      const double lr = t.get_double("lr", 0);
      if (lr <= 0) t.fail("train.lr", "a positive learning rate");
      if (has_path(doc, {"train", "optimizer", "kwargs", "lr"})) {
        t.notice("lr", "train.optimizer.kwargs.lr is given and is used");
      } else {
        c.train.optimizer.lr = lr;
        t.notice("lr", fmt::format("taken as train.optimizer.kwargs.lr ({})", lr));
      }
    }
    parse_scheduler(t.child("lr_scheduler"), c.train.lr_scheduler);
    if (c.train.lr_scheduler.t_max == 0) c.train.lr_scheduler.t_max = c.train.num_epoch;
    t.finish();
  }
  {
    auto t = r.child("test");
    c.test.batch_size = t.get_int("batch_size", c.test.batch_size, 1);
    c.test.interval = t.get_int("interval", c.test.interval, 1);
    c.test.logit_adjust_tau = t.get_double("logit_adjust_tau", c.test.logit_adjust_tau);
    check_test_loss(t);
    t.finish();
  }
  {
    auto k = r.child("checkpoint");
    k.notice("path", "checkpoints are written to the run folder (--out), checkpoints/ inside it");
    c.checkpoint.load_checkpoint = k.get_string("load_checkpoint", "");
    c.checkpoint.resume = k.get_string("resume", "");
    c.checkpoint.save_checkpoint_interval = k.get_int("save_checkpoint_interval", 0, 0);
    c.checkpoint.save_step_interval = k.get_int("save_step_interval", 0, 0);
    k.finish();
  }
  {
    auto l = r.child("log");
    l.notice("path", "the log is the run folder's log.txt (--out)");
    c.log.log_interval = l.get_int("log_interval", c.log.log_interval, 1);
    c.log.progress = l.get_string("progress", c.log.progress);
    if (c.log.progress != "auto" && c.log.progress != "bar" && c.log.progress != "lines" &&
        c.log.progress != "quiet") {
      l.fail("log.progress", fmt::format("auto, bar, lines or quiet, got '{}'", c.log.progress));
    }
    l.finish();
  }
  {
    auto d = r.child("dist");
    c.dist.backend = d.get_string("backend", c.dist.backend);
    if (c.dist.backend != "auto" && c.dist.backend != "gloo" && c.dist.backend != "nccl") {
      d.fail("dist.backend", fmt::format("auto, gloo or nccl, got '{}'", c.dist.backend));
    }
    c.dist.timeout = d.get_double("timeout", c.dist.timeout);
    if (!(c.dist.timeout >= 1 && c.dist.timeout <= 1e7)) {
      d.fail("dist.timeout", fmt::format("seconds in [1, 1e7], got {}", c.dist.timeout));
    }
    c.dist.sync_batchnorm = d.get_bool("sync_batchnorm", c.dist.sync_batchnorm);
    d.finish();
  }
  {
    auto f = r.child("finetune");
    auto& ft = c.finetune;
    ft.Na = f.get_int("Na", ft.Na, 1);
    ft.Nf = f.get_int("Nf", ft.Nf, 1);
    ft.ts = f.get_double("ts", ft.ts);
    ft.tg = f.get_double("tg", ft.tg);
    if (ft.ts < 0 || ft.ts > 1)
      f.fail("finetune.ts", fmt::format("a threshold in [0, 1], got {}", ft.ts));
    if (ft.tg < 0 || ft.tg > 1)
      f.fail("finetune.tg", fmt::format("a threshold in [0, 1], got {}", ft.tg));
    if (ft.ts < ft.tg) {
      f.fail("finetune.ts", fmt::format("ts >= tg (class-specific above class-generic), got ts={} "
                                        "tg={}",
                                        ft.ts, ft.tg));
    }
    ft.confusing_from = f.get_string("confusing_from", ft.confusing_from);
    if (ft.confusing_from != "head" && ft.confusing_from != "all") {
      f.fail("finetune.confusing_from", fmt::format("head or all, got '{}'", ft.confusing_from));
    }
    ft.head_ratio = f.get_double("head_ratio", ft.head_ratio);
    if (ft.head_ratio <= 0 || ft.head_ratio > 1) {
      f.fail("finetune.head_ratio", fmt::format("a fraction in (0, 1], got {}", ft.head_ratio));
    }
    ft.head_classes = f.get_list<int64_t>("head_classes", "a list of class indices");
    {
      auto sorted = ft.head_classes;
      std::sort(sorted.begin(), sorted.end());
      const auto twice = std::adjacent_find(sorted.begin(), sorted.end());
      if (twice != sorted.end()) {
        f.fail("finetune.head_classes", fmt::format("each class once, got {} twice", *twice));
      }
    }
    ft.offline = f.get_bool("offline", ft.offline);
    if (f.has("cam_layer")) {  // the reference's Phase III CAM layer
      reference_cam_layer = f.get_string("cam_layer", "");
      f.notice("cam_layer", has_path(doc, {"feature", "cam_layers"})
                                ? "feature.cam_layers is given and is used"
                                : "taken as feature.cam_layers (" + reference_cam_layer + ")");
    }
    ft.analysis = f.get_string("analysis", ft.analysis);
    const int64_t group = 2 * (1 + ft.Na);
    if (f.has("Nt")) {
      const auto nt = f.get_int("Nt", 1, 1);
      if (nt * group != c.train.batch_size) {
        f.fail("finetune.Nt", fmt::format("train.batch_size / (2*(1+Na)) = {} / {}, got {}",
                                          c.train.batch_size, group, nt));
      }
    }
    f.finish();
  }
  {
    auto d = r.child("decoupling");
    c.decoupling.method = d.get_string("method", c.decoupling.method);
    if (c.decoupling.method != "crt" && c.decoupling.method != "lws" &&
        c.decoupling.method != "tau_norm") {
      d.fail("decoupling.method",
             fmt::format("crt, lws or tau_norm, got '{}'", c.decoupling.method));
    }
    if (c.decoupling.method != "tau_norm" && d.has("tau")) {
      d.fail("decoupling.tau",
             fmt::format("no value: only tau_norm has τ, the method is {}", c.decoupling.method));
    }
    // τ: a number, or `search` (the best of kTauGrid on the validation split).
    c.decoupling.tau_search = d.has("tau") && d.get_string("tau", "") == "search";
    if (!c.decoupling.tau_search) {
      c.decoupling.tau = d.get<double>("tau", c.decoupling.tau, "a number >= 0 or 'search'");
      if (!(c.decoupling.tau >= 0) || !std::isfinite(c.decoupling.tau)) {
        d.fail("decoupling.tau",
               fmt::format("a number >= 0 or 'search', got {}", c.decoupling.tau));
      }
    }
    d.finish();
  }
  {
    auto f = r.child("feature");
    f.notice("path", "Phase II writes analysis.pt and features.pt to its run folder (--out)");
    if (f.has("cam_layers")) {
      // The reference takes a comma-separated string; a one-element list works too.
      std::vector<std::string> layers;
      const YAML::Node v = doc["feature"]["cam_layers"];
      if (v.IsSequence()) {
        layers = f.get_list<std::string>("cam_layers", "a layer name or a list of one");
      } else {
        std::string s = f.get_string("cam_layers", "");
        size_t start = 0;
        while (start <= s.size()) {
          auto comma = s.find(',', start);
          auto part =
              s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
          part.erase(0, part.find_first_not_of(" \t"));
          part.erase(part.find_last_not_of(" \t") + 1);
          if (!part.empty()) layers.push_back(part);
          if (comma == std::string::npos) break;
          start = comma + 1;
        }
      }
      if (layers.size() != 1) {
        f.fail("feature.cam_layers", "exactly one layer (e.g. layer3)");
      }
      c.feature.cam_layer = layers[0];
    }
    if (!f.has("cam_layers") && !reference_cam_layer.empty()) {
      c.feature.cam_layer = reference_cam_layer;
    }
    c.feature.store = f.get_bool("store", c.feature.store);
    c.feature.score_matrix = f.get_bool("score_matrix", c.feature.score_matrix);
    f.finish();
  }
  r.finish();
  c.notices = r.notices();
  return c;
}

PipelineConfig parse_pipeline(const YAML::Node& doc, const std::string& source) {
  PipelineConfig p;
  p.phase_i = parse_config(phase_document(doc, "phase_i"), source);
  p.phase_ii = parse_config(phase_document(doc, "phase_ii"), source);
  p.phase_iii = parse_config(phase_document(doc, "phase_iii"), source);
  // `fsa decouple`'s section, checked with the others so that a typo there
  // stops every command of the file.
  if (doc["decouple"]) parse_config(phase_document(doc, "decouple"), source);
  return p;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides,
                   const std::string& phase) {
  YAML::Node doc = path.empty() ? YAML::Node(YAML::NodeType::Map) : load_yaml_file(path);
  apply_overrides(doc, overrides);
  const std::string source = path.empty() ? "<defaults>" : path;
  return parse_config(phase_document(doc, phase), source);
}

std::string to_yaml(const Config& c) {
  YAML::Emitter e;
  // 15 significant digits: every value a person wrote (0.1, 0.485) reads back
  // exactly and prints as written, not as 0.10000000000000001.
  e.SetDoublePrecision(15);
  e << YAML::BeginMap;
  e << YAML::Key << "random_seed";
  if (c.random_seed) {
    e << YAML::Value << *c.random_seed;
  } else {
    e << YAML::Value << YAML::Null;
  }
  e << YAML::Key << "device" << YAML::Value << c.device;
  e << YAML::Key << "threads" << YAML::Value << c.threads;
  e << YAML::Key << "precision" << YAML::Value << c.precision;
  e << YAML::Key << "memory_format" << YAML::Value << c.memory_format;
  e << YAML::Key << "dataset" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "name" << YAML::Value << c.dataset.name;
  e << YAML::Key << "root" << YAML::Value << c.dataset.root;
  e << YAML::Key << "kwargs" << YAML::Value << YAML::BeginMap << YAML::Key << "im" << YAML::Value
    << c.dataset.imbalance_factor << YAML::EndMap;
  e << YAML::Key << "normalize" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "mean" << YAML::Value << YAML::Flow << c.dataset.mean;
  e << YAML::Key << "std" << YAML::Value << YAML::Flow << c.dataset.std;
  e << YAML::EndMap;
  e << YAML::Key << "max_test_per_class" << YAML::Value << c.dataset.max_test_per_class;
  e << YAML::Key << "val_fraction" << YAML::Value << c.dataset.val_fraction;
  e << YAML::Key << "skip_corrupt" << YAML::Value << c.dataset.skip_corrupt;
  if (is_list_dataset(c.dataset.name)) {
    const auto& d = c.dataset;
    e << YAML::Key << "train_list" << YAML::Value << d.train_list;
    e << YAML::Key << "val_list" << YAML::Value << d.val_list;
    e << YAML::Key << "test_list" << YAML::Value << d.test_list;
    e << YAML::Key << "num_classes" << YAML::Value << d.num_classes;
    e << YAML::Key << "num_workers" << YAML::Value << d.num_workers;
    e << YAML::Key << "transform" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "crop_size" << YAML::Value << d.transform.crop_size;
    e << YAML::Key << "resize_size" << YAML::Value << d.transform.resize_size;
    e << YAML::Key << "color_jitter" << YAML::Value << d.transform.color_jitter;
    e << YAML::Key << "train_crop" << YAML::Value << d.transform.train_crop;
    e << YAML::Key << "scale" << YAML::Value << YAML::Flow << d.transform.scale;
    e << YAML::Key << "ratio" << YAML::Value << YAML::Flow << d.transform.ratio;
    e << YAML::Key << "padding" << YAML::Value << d.transform.padding;
    e << YAML::EndMap;
  }
  e << YAML::EndMap;
  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap << YAML::Key << "name" << YAML::Value
    << c.model.name << YAML::Key << "classifier" << YAML::Value << c.model.classifier;
  if (!c.model.pretrained.empty())
    e << YAML::Key << "pretrained" << YAML::Value << c.model.pretrained;
  e << YAML::EndMap;

  const auto& t = c.train;
  e << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "num_epoch" << YAML::Value << t.num_epoch;
  e << YAML::Key << "batch_size" << YAML::Value << t.batch_size;
  e << YAML::Key << "gradient_clip";
  if (t.gradient_clip) {
    e << YAML::Value << *t.gradient_clip;
  } else {
    e << YAML::Value << YAML::Null;
  }
  const auto& l = t.loss;
  e << YAML::Key << "loss" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "name" << YAML::Value << l.name;
  if (l.name == "focal") e << YAML::Key << "gamma" << YAML::Value << l.gamma;
  if (l.name == "ldam") {
    e << YAML::Key << "max_margin" << YAML::Value << l.max_margin;
    e << YAML::Key << "scale" << YAML::Value << l.scale;
  }
  e << YAML::Key << "weighting" << YAML::Value << l.weighting;
  if (l.weighting != "none") e << YAML::Key << "beta" << YAML::Value << l.beta;
  if (l.weighting == "drw") e << YAML::Key << "drw_epoch" << YAML::Value << l.drw_epoch;
  e << YAML::EndMap;
  e << YAML::Key << "sampler" << YAML::Value << t.sampler.name;
  e << YAML::Key << "optimizer" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "name" << YAML::Value << t.optimizer.name;
  e << YAML::Key << "kwargs" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "lr" << YAML::Value << t.optimizer.lr;
  e << YAML::Key << "weight_decay" << YAML::Value << t.optimizer.weight_decay;
  if (t.optimizer.name == "SGD") {
    e << YAML::Key << "momentum" << YAML::Value << t.optimizer.momentum;
    e << YAML::Key << "nesterov" << YAML::Value << t.optimizer.nesterov;
  } else {
    e << YAML::Key << "betas" << YAML::Value << YAML::Flow
      << std::vector<double>{t.optimizer.beta1, t.optimizer.beta2};
    e << YAML::Key << "eps" << YAML::Value << t.optimizer.eps;
  }
  e << YAML::EndMap << YAML::EndMap;
  const auto& s = t.lr_scheduler;
  e << YAML::Key << "lr_scheduler" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "name" << YAML::Value << s.name;
  e << YAML::Key << "kwargs" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "gamma" << YAML::Value << s.gamma;
  if (s.name == "warmup" || s.name == "MultiStepLR") {
    e << YAML::Key << "milestones" << YAML::Value << YAML::Flow << s.milestones;
  }
  if (s.name == "StepLR") e << YAML::Key << "step_size" << YAML::Value << s.step_size;
  if (s.name == "CosineAnnealingLR") {
    e << YAML::Key << "T_max" << YAML::Value << s.t_max;
    e << YAML::Key << "eta_min" << YAML::Value << s.eta_min;
  }
  if (s.name == "warmup") {
    e << YAML::Key << "warmup_epochs" << YAML::Value << s.warmup_epochs;
    e << YAML::Key << "warmup_factor" << YAML::Value << s.warmup_factor;
  }
  e << YAML::EndMap << YAML::EndMap << YAML::EndMap;

  e << YAML::Key << "test" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "batch_size" << YAML::Value << c.test.batch_size;
  e << YAML::Key << "interval" << YAML::Value << c.test.interval;
  e << YAML::Key << "logit_adjust_tau" << YAML::Value << c.test.logit_adjust_tau;
  e << YAML::EndMap;
  e << YAML::Key << "checkpoint" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "load_checkpoint" << YAML::Value << c.checkpoint.load_checkpoint;
  e << YAML::Key << "resume" << YAML::Value << c.checkpoint.resume;
  e << YAML::Key << "save_checkpoint_interval" << YAML::Value
    << c.checkpoint.save_checkpoint_interval;
  e << YAML::Key << "save_step_interval" << YAML::Value << c.checkpoint.save_step_interval;
  e << YAML::EndMap;
  e << YAML::Key << "log" << YAML::Value << YAML::BeginMap << YAML::Key << "log_interval"
    << YAML::Value << c.log.log_interval << YAML::Key << "progress" << YAML::Value << c.log.progress
    << YAML::EndMap;
  e << YAML::Key << "dist" << YAML::Value << YAML::BeginMap << YAML::Key << "backend" << YAML::Value
    << c.dist.backend << YAML::Key << "timeout" << YAML::Value << c.dist.timeout << YAML::Key
    << "sync_batchnorm" << YAML::Value << c.dist.sync_batchnorm << YAML::EndMap;
  const auto& f = c.finetune;
  e << YAML::Key << "finetune" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "Na" << YAML::Value << f.Na;
  e << YAML::Key << "Nf" << YAML::Value << f.Nf;
  e << YAML::Key << "ts" << YAML::Value << f.ts;
  e << YAML::Key << "tg" << YAML::Value << f.tg;
  e << YAML::Key << "confusing_from" << YAML::Value << f.confusing_from;
  e << YAML::Key << "head_ratio" << YAML::Value << f.head_ratio;
  e << YAML::Key << "head_classes" << YAML::Value << YAML::Flow << f.head_classes;
  e << YAML::Key << "offline" << YAML::Value << f.offline;
  e << YAML::Key << "analysis" << YAML::Value << f.analysis;
  e << YAML::EndMap;
  e << YAML::Key << "decoupling" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "method" << YAML::Value << c.decoupling.method;
  if (c.decoupling.method == "tau_norm") {
    e << YAML::Key << "tau" << YAML::Value;
    if (c.decoupling.tau_search) {
      e << "search";
    } else {
      e << c.decoupling.tau;
    }
  }
  e << YAML::EndMap;
  e << YAML::Key << "feature" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "cam_layers" << YAML::Value << c.feature.cam_layer;
  e << YAML::Key << "store" << YAML::Value << c.feature.store;
  e << YAML::Key << "score_matrix" << YAML::Value << c.feature.score_matrix;
  e << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace fsa::io
