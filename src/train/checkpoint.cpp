#include "fsa/train/checkpoint.h"

#include <fmt/format.h>
#include <torch/serialize.h>
#include <torch/serialize/archive.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "fsa/io/files.h"
#include "internal.h"

namespace fsa::train {
namespace {

c10::impl::GenericDict string_dict() {
  return c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
}

c10::impl::GenericDict read_dict(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    throw CheckpointError(fmt::format("checkpoint '{}' does not exist", path));
  }
  std::vector<char> bytes;
  try {
    bytes = io::read_file(path);
  } catch (const std::exception& e) {
    throw CheckpointError(e.what());
  }
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    throw CheckpointError(fmt::format("checkpoint '{}' is truncated or not an fsa checkpoint "
                                      "(a pickled dict): {}", path, detail::short_message(e)));
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

CheckpointInfo info_of(const c10::impl::GenericDict& d, const std::string& path) {
  if (d.contains("score_matrix") || d.contains("cams")) {
    throw CheckpointError(fmt::format("'{}' is a Phase II file (analysis.pt or features.pt), not "
                                      "a checkpoint; expected a Phase I or III checkpoint "
                                      "(checkpoints/last.pt)", path));
  }
  CheckpointInfo info;
  info.epoch = field(d, "epoch", path, [](const c10::IValue& v) { return v.toInt(); });
  info.best_acc1 = field(d, "best_acc1", path, [](const c10::IValue& v) { return v.toDouble(); });
  info.best_epoch = field(d, "best_epoch", path, [](const c10::IValue& v) { return v.toInt(); });
  info.phase = field(d, "phase", path, [](const c10::IValue& v) { return v.toStringRef(); });
  info.arch = field(d, "arch", path, [](const c10::IValue& v) { return v.toStringRef(); });
  info.num_classes = field(d, "num_classes", path, [](const c10::IValue& v) { return v.toInt(); });
  info.cam_layer = field(d, "cam_layer", path, [](const c10::IValue& v) { return v.toStringRef(); });
  info.config = field(d, "config", path, [](const c10::IValue& v) { return v.toStringRef(); });
  info.history = field(d, "history", path, [](const c10::IValue& v) { return v.toStringRef(); });
  return info;
}

}  // namespace

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
  at::Tensor optimizer_bytes;
  if (optimizer) {
    torch::serialize::OutputArchive archive;
    optimizer->save(archive);
    std::ostringstream os;
    archive.save_to(os);
    const std::string s = os.str();
    auto bytes = torch::empty({static_cast<int64_t>(s.size())}, torch::kUInt8);
    std::memcpy(bytes.data_ptr<uint8_t>(), s.data(), s.size());
    d.insert("optimizer", bytes);
    optimizer_bytes = bytes;
  }
  const auto generic_state = c10::impl::toGenericDict(state);
  d.insert("checksum", checksum(generic_state, optimizer ? &optimizer_bytes : nullptr));
  d.insert("epoch", info.epoch);
  d.insert("best_acc1", info.best_acc1);
  d.insert("best_epoch", info.best_epoch);
  d.insert("phase", info.phase);
  d.insert("arch", model.arch());
  d.insert("num_classes", model.num_classes());
  d.insert("cam_layer", info.cam_layer);
  d.insert("config", info.config);
  d.insert("history", info.history);
  io::write_file_atomic(path, torch::pickle_save(d));
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  return info_of(read_dict(path), path);
}


CheckpointInfo load_checkpoint(const std::string& path, models::Backbone& model,
                               torch::optim::Optimizer* optimizer) {
  const auto d = read_dict(path);
  const auto info = info_of(d, path);
  if (info.arch != model.arch() || info.num_classes != model.num_classes()) {
    throw CheckpointError(fmt::format("checkpoint '{}' holds {} with {} classes; the config asks "
                                      "for {} with {} classes", path, info.arch, info.num_classes,
                                      model.arch(), model.num_classes()));
  }
  const auto state = field(d, "state_dict", path, [](const c10::IValue& v) {
    return v.toGenericDict();
  });
  if (d.contains("checksum")) {
    at::Tensor optimizer_bytes;
    if (d.contains("optimizer")) {
      optimizer_bytes = field(d, "optimizer", path, [](const c10::IValue& v) {
        return v.toTensor();
      });
    }
    const auto expected = field(d, "checksum", path, [](const c10::IValue& v) {
      return v.toInt();
    });
    const auto found = checksum(state, optimizer_bytes.defined() ? &optimizer_bytes : nullptr);
    if (found != expected) {
      throw CheckpointError(fmt::format(
          "checkpoint '{}' is corrupt: its weights and optimiser state do not match the "
          "CRC-32 written with them ({:08x} written, {:08x} read)", path, expected, found));
    }
  }
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
                                        path, name, c10::str(it->second.sizes()), c10::str(target.sizes())));
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
      throw CheckpointError(fmt::format("checkpoint '{}': optimiser state does not match this "
                                        "optimiser", path));
    }
  }
  return info;
}

}  // namespace fsa::train
