#include "fsa/train/checkpoint.h"

#include <fmt/format.h>
#include <torch/serialize.h>
#include <torch/serialize/archive.h>
#include <yaml-cpp/yaml.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "fsa/io/files.h"
#include "fsa/io/torch_file.h"
#include "internal.h"

namespace fsa::train {
namespace {

c10::impl::GenericDict string_dict() {
  return c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
}

c10::impl::GenericDict read_dict(const std::string& path) {
  if (const auto problem = io::file_problem(path); !problem.empty()) {
    throw CheckpointError(fmt::format("checkpoint '{}' {}", path, problem));
  }
  c10::IValue value;
  try {
    value = io::with_doubles(io::read_torch_file(path));
  } catch (const std::exception& e) {
    throw CheckpointError(
        fmt::format("checkpoint {} (expected an fsa checkpoint: a torch.save "
                    "file of a dict)",
                    detail::short_message(e)));
  }
  if (!value.isGenericDict()) {
    throw CheckpointError(fmt::format("checkpoint '{}' does not hold a dict", path));
  }
  return value.toGenericDict();
}

/// CRC-32 of `crc` continued over the bytes of `t` (contiguous, on the CPU).
uint32_t crc_of(uint32_t crc, const at::Tensor& t) {
  const auto c = t.cpu().contiguous();
  return static_cast<uint32_t>(
      crc32_z(crc, static_cast<const Bytef*>(c.data_ptr()), static_cast<size_t>(c.nbytes())));
}

/// The `checksum` entry: CRC-32 of the state dict's tensors in their order,
/// then of the optimiser bytes if there are any.
template <typename Dict>
int64_t checksum(const Dict& state, const at::Tensor* optimizer_bytes) {
  uint32_t crc = crc32_z(0, Z_NULL, 0);
  for (const auto& kv : state) crc = crc_of(crc, kv.value().toTensor());
  if (optimizer_bytes) crc = crc_of(crc, *optimizer_bytes);
  return crc;
}

template <typename F>
auto field(const c10::impl::GenericDict& d, const std::string& key, const std::string& path,
           F convert) {
  if (!d.contains(key)) {
    throw CheckpointError(fmt::format("checkpoint '{}' has no '{}' entry", path, key));
  }
  try {
    return convert(d.at(key));
  } catch (const c10::Error&) {
    throw CheckpointError(fmt::format("checkpoint '{}': entry '{}' has the wrong type", path, key));
  }
}

/// The format-1 seal: the CRC of the weights and optimiser bytes alone.
void check_weights_checksum(const c10::impl::GenericDict& d, const std::string& path) {
  if (!d.contains("checksum")) return;  // another tool's file
  const auto state =
      field(d, "state_dict", path, [](const c10::IValue& v) { return v.toGenericDict(); });
  at::Tensor optimizer_bytes;
  if (d.contains("optimizer")) {
    optimizer_bytes =
        field(d, "optimizer", path, [](const c10::IValue& v) { return v.toTensor(); });
  }
  const auto expected = field(d, "checksum", path, [](const c10::IValue& v) { return v.toInt(); });
  const auto found = checksum(state, optimizer_bytes.defined() ? &optimizer_bytes : nullptr);
  if (found != expected) {
    throw CheckpointError(
        fmt::format("checkpoint '{}' is corrupt: its weights and optimiser state do not match the "
                    "CRC-32 written with them ({:08x} written, {:08x} read)",
                    path, expected, found));
  }
}

CheckpointInfo info_of(const c10::impl::GenericDict& d, const std::string& path) {
  if (d.contains("confusing") || d.contains("score_matrix") || d.contains("cams")) {
    throw CheckpointError(
        fmt::format("'{}' is a Phase II file (analysis.pt or features.pt), not "
                    "a checkpoint; expected a Phase I or III checkpoint "
                    "(checkpoints/last.pt)",
                    path));
  }
  if (!detail::check_seal(d, path, "checkpoint")) check_weights_checksum(d, path);
  CheckpointInfo info;
  info.epoch = field(d, "epoch", path, [](const c10::IValue& v) { return v.toInt(); });
  info.best_acc1 = field(d, "best_acc1", path, [](const c10::IValue& v) { return v.toDouble(); });
  info.best_epoch = field(d, "best_epoch", path, [](const c10::IValue& v) { return v.toInt(); });
  info.phase = field(d, "phase", path, [](const c10::IValue& v) { return v.toStringRef(); });
  info.arch = field(d, "arch", path, [](const c10::IValue& v) { return v.toStringRef(); });
  info.num_classes = field(d, "num_classes", path, [](const c10::IValue& v) { return v.toInt(); });
  info.cam_layer =
      field(d, "cam_layer", path, [](const c10::IValue& v) { return v.toStringRef(); });
  info.config = field(d, "config", path, [](const c10::IValue& v) { return v.toStringRef(); });
  info.history = field(d, "history", path, [](const c10::IValue& v) { return v.toStringRef(); });
  if (d.contains("fingerprint")) {
    info.fingerprint = field(d, "fingerprint", path, [](const c10::IValue& v) {
      return detail::fingerprint_from(v.toGenericDict());
    });
  }
  if (d.contains("class_names")) {
    info.class_names = field(d, "class_names", path, [](const c10::IValue& v) {
      std::vector<std::string> names;
      for (const auto& n : v.toListRef()) names.push_back(n.toStringRef());
      return names;
    });
  }
  if (d.contains("preprocessing")) {
    info.preprocessing =
        field(d, "preprocessing", path, [](const c10::IValue& v) { return v.toStringRef(); });
  }
  if (d.contains("step")) {
    info.step = field(d, "step", path, [](const c10::IValue& v) { return v.toInt(); });
    info.position =
        field(d, "position", path, [](const c10::IValue& v) { return v.toStringRef(); });
  }
  if (d.contains("checksum")) {
    info.checksum = field(d, "checksum", path, [](const c10::IValue& v) { return v.toInt(); });
  }
  return info;
}

}  // namespace

namespace detail {
namespace {

/// CRC-32 continued over an IValue, canonically: a type tag, then the value
/// (tensors: dtype, shape and bytes; dicts: entries by sorted key).
uint32_t crc_of_value(uint32_t crc, const c10::IValue& v) {
  auto add = [&crc](const std::string& text) {
    crc = static_cast<uint32_t>(
        crc32_z(crc, reinterpret_cast<const Bytef*>(text.data()), text.size()));
  };
  if (v.isTensor()) {
    const auto& t = v.toTensor();
    add(fmt::format("T{}{}", c10::toString(t.scalar_type()), c10::str(t.sizes())));
    return crc_of(crc, t);
  }
  if (v.isString()) {
    add(fmt::format("S{}:", v.toStringRef().size()));
    add(v.toStringRef());
  } else if (v.isInt()) {
    add(fmt::format("I{}", v.toInt()));
  } else if (v.isDouble()) {
    add(fmt::format("D{:.17g}", v.toDouble()));
  } else if (v.isBool()) {
    add(v.toBool() ? "B1" : "B0");
  } else if (v.isNone()) {
    add("N");
  } else if (v.isList()) {
    const auto items = v.toListRef();
    add(fmt::format("L{}", items.size()));
    for (const auto& item : items) crc = crc_of_value(crc, item);
  } else if (v.isGenericDict()) {
    const auto dict = v.toGenericDict();
    std::vector<std::pair<std::string, c10::IValue>> entries;
    for (const auto& kv : dict) entries.emplace_back(kv.key().toStringRef(), kv.value());
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    add(fmt::format("M{}", entries.size()));
    for (const auto& [key, value] : entries) {
      add(fmt::format("K{}:", key.size()));
      add(key);
      crc = crc_of_value(crc, value);
    }
  } else {
    throw std::logic_error(fmt::format("seal: no canonical form for a {}", v.tagKind()));
  }
  return crc;
}

/// The seal of `d`: every entry but `checksum`.
int64_t seal_of(const c10::impl::GenericDict& d) {
  auto rest = c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
  for (const auto& kv : d) {
    if (kv.key().toStringRef() != "checksum") rest.insert(kv.key(), kv.value());
  }
  return crc_of_value(crc32_z(0, Z_NULL, 0), rest);
}

}  // namespace

void seal(c10::impl::GenericDict& d) {
  d.insert_or_assign("format", kFileFormat);
  d.erase("checksum");
  d.insert("checksum", seal_of(d));
}

bool check_seal(const c10::impl::GenericDict& d, const std::string& path, const std::string& what) {
  if (!d.contains("format")) return false;  // format 1, or another tool's file
  const auto& format = d.at("format");
  if (!format.isInt() || format.toInt() < 2) {
    throw CheckpointError(
        fmt::format("{} '{}' has an unknown 'format' entry; expected {}", what, path, kFileFormat));
  }
  if (format.toInt() > kFileFormat) {
    throw CheckpointError(
        fmt::format("{} '{}' is of format {}, written by a newer fsa; this one "
                    "reads formats up to {}",
                    what, path, format.toInt(), kFileFormat));
  }
  if (!d.contains("checksum") || !d.at("checksum").isInt()) {
    throw CheckpointError(
        fmt::format("{} '{}' has lost its checksum (every file this fsa writes "
                    "carries one): it was edited or damaged",
                    what, path));
  }
  const auto expected = d.at("checksum").toInt();
  const auto found = seal_of(d);
  if (found != expected) {
    throw CheckpointError(fmt::format(
        "{} '{}' is corrupt or was edited: its contents do not match the CRC-32 written with "
        "them ({:08x} written, {:08x} read)",
        what, path, expected, found));
  }
  return true;
}

}  // namespace detail

void save_checkpoint(const std::string& path, models::Backbone& model,
                     torch::optim::Optimizer* optimizer, const CheckpointInfo& info) {
  c10::Dict<std::string, at::Tensor> state;
  // Contiguous (NCHW) whatever the training layout, so that checkpoints of
  // channels-last runs are the same files as any other.
  for (const auto& p : model.named_parameters()) {
    state.insert(p.key(), p.value().detach().cpu().contiguous());
  }
  for (const auto& b : model.named_buffers()) state.insert(b.key(), b.value().detach().cpu());
  auto d = string_dict();
  d.insert("state_dict", state);
  if (optimizer) {
    torch::serialize::OutputArchive archive;
    optimizer->save(archive);
    std::ostringstream os;
    archive.save_to(os);
    const std::string s = os.str();
    auto bytes = torch::empty({static_cast<int64_t>(s.size())}, torch::kUInt8);
    std::memcpy(bytes.data_ptr<uint8_t>(), s.data(), s.size());
    d.insert("optimizer", bytes);
  }
  d.insert("epoch", info.epoch);
  d.insert("best_acc1", info.best_acc1);
  d.insert("best_epoch", info.best_epoch);
  d.insert("phase", info.phase);
  d.insert("arch", model.arch());
  d.insert("num_classes", model.num_classes());
  d.insert("cam_layer", info.cam_layer);
  d.insert("config", info.config);
  d.insert("history", info.history);
  if (info.step > 0) {  // a mid-epoch checkpoint
    d.insert("step", info.step);
    d.insert("position", info.position);
  }
  if (!info.fingerprint.dataset.empty()) {
    d.insert("fingerprint", detail::fingerprint_dict(info.fingerprint));
  }
  if (!info.class_names.empty()) {
    c10::List<std::string> names;
    for (const auto& n : info.class_names) names.push_back(n);
    d.insert("class_names", names);
  }
  if (!info.preprocessing.empty()) d.insert("preprocessing", info.preprocessing);
  detail::seal(d);
  io::write_file_atomic(path, io::torch_save_bytes(d));
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  return info_of(read_dict(path), path);
}

CheckpointInfo load_checkpoint(const std::string& path, models::Backbone& model,
                               torch::optim::Optimizer* optimizer) {
  const auto d = read_dict(path);
  const auto info = info_of(d, path);
  if (info.arch != model.arch() || info.num_classes != model.num_classes()) {
    throw CheckpointError(
        fmt::format("checkpoint '{}' holds {} with {} classes; the config asks "
                    "for {} with {} classes",
                    path, info.arch, info.num_classes, model.arch(), model.num_classes()));
  }
  const auto state =
      field(d, "state_dict", path, [](const c10::IValue& v) { return v.toGenericDict(); });
  std::map<std::string, at::Tensor> by_name;
  for (const auto& kv : state) {
    std::string key = kv.key().toStringRef();
    if (key.rfind("module.", 0) == 0) key = key.substr(7);
    by_name[key] = kv.value().toTensor();
  }
  torch::NoGradGuard no_grad;
  auto copy_into = [&](const std::string& name, at::Tensor& target) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
      throw CheckpointError(fmt::format(
          "checkpoint '{}' has no weights for '{}'{}", path, name,
          bias && name.rfind(model.classifier_name() + ".", 0) == 0
              ? " (a cosine classifier has no bias: set model.classifier: cosine, as the run "
                "that wrote it did)"
              : ""));
    }
    if (it->second.sizes() != target.sizes()) {
      throw CheckpointError(fmt::format("checkpoint '{}': '{}' has shape {}, the model expects {}",
                                        path, name, c10::str(it->second.sizes()),
                                        c10::str(target.sizes())));
    }
    target.copy_(it->second);
  };
  // Weights the model has no place for are refused too: loading would drop
  // them silently (a linear classifier's bias into a cosine classifier).
  std::set<std::string> expected_names;
  for (const auto& p : model.named_parameters()) expected_names.insert(p.key());
  for (const auto& b : model.named_buffers()) expected_names.insert(b.key());
  for (const auto& [name, tensor] : by_name) {
    if (expected_names.count(name)) continue;
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    throw CheckpointError(fmt::format(
        "checkpoint '{}' holds '{}', which the configured {} has no place for{}", path, name,
        model.arch(),
        bias && model.cosine_classifier()
            ? " (a linear classifier's bias: the config says model.classifier: cosine, the "
              "checkpoint was trained with linear)"
            : ""));
  }
  for (auto& p : model.named_parameters()) copy_into(p.key(), p.value());
  for (auto& b : model.named_buffers()) copy_into(b.key(), b.value());
  if (optimizer && !d.contains("optimizer")) {
    throw CheckpointError(fmt::format(
        "checkpoint '{}' holds no optimiser state (fsa export writes weights only), so a run "
        "cannot resume from it; start a new run from its weights with "
        "checkpoint.load_checkpoint instead",
        path));
  }
  if (optimizer && d.contains("optimizer")) {
    auto bytes = d.at("optimizer").toTensor().contiguous();
    std::string s(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), bytes.numel());
    std::istringstream is(s);
    torch::serialize::InputArchive archive;
    const auto params = model.parameters();
    const auto device = params.empty() ? torch::Device(torch::kCPU) : params[0].device();
    try {
      archive.load_from(is, device);
      optimizer->load(archive);
    } catch (const c10::Error& e) {
      throw CheckpointError(
          fmt::format("checkpoint '{}': optimiser state does not match this "
                      "optimiser",
                      path));
    }
  }
  return info;
}

std::shared_ptr<models::Backbone> load_checkpoint_model(const std::string& path,
                                                        CheckpointInfo* info) {
  const auto described = read_checkpoint_info(path);
  std::shared_ptr<models::Backbone> model;
  try {
    model = models::make_model(described.arch, described.num_classes);
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(fmt::format("checkpoint '{}': {}", path, e.what()));
  }
  std::string classifier;
  try {
    const auto recorded = YAML::Load(described.config);
    if (recorded["model"] && recorded["model"]["classifier"]) {
      classifier = recorded["model"]["classifier"].as<std::string>();
    }
  } catch (const YAML::Exception&) {  // no config: a linear classifier
  }
  if (classifier == "cosine") model->use_cosine_classifier();
  load_checkpoint(path, *model, nullptr);
  model->eval();
  if (info) *info = described;
  return model;
}

}  // namespace fsa::train
