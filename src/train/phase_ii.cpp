// Phase II: score matrix, confusing classes and the offline feature store
// (METHOD.md). Runs the Phase I network in evaluation mode over the training
// set without augmentation.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/serialize.h>

#include <filesystem>
#include <sstream>

#include "fsa/cam/cam.h"
#include "fsa/data/inputs.h"
#include "fsa/dist/dist.h"
#include "fsa/io/files.h"
#include "fsa/io/torch_file.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/engine.h"
#include "fsa/train/phases.h"
#include "internal.h"

namespace fs = std::filesystem;

namespace fsa::train {
namespace detail {

c10::impl::GenericDict fingerprint_dict(const data::Fingerprint& f) {
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  d.insert("dataset", f.dataset);
  d.insert("imbalance_factor", f.imbalance_factor);
  d.insert("seed", static_cast<int64_t>(f.seed));
  d.insert("num_samples", f.num_samples);
  d.insert("sample_hash", f.sample_hash);
  return d;
}

data::Fingerprint fingerprint_from(const c10::impl::GenericDict& d) {
  data::Fingerprint f;
  f.dataset = d.at("dataset").toStringRef();
  f.imbalance_factor = d.at("imbalance_factor").toDouble();
  f.seed = static_cast<uint64_t>(d.at("seed").toInt());
  f.num_samples = d.at("num_samples").toInt();
  f.sample_hash = d.at("sample_hash").toStringRef();
  return f;
}

}  // namespace detail

namespace {

using detail::fingerprint_dict;
using detail::fingerprint_from;

}  // namespace

torch::Tensor rank_confusing(const torch::Tensor& scores, const std::vector<bool>& head,
                             bool head_only) {
  const auto c = scores.size(0);
  auto ranked = torch::full({c, std::max<int64_t>(c - 1, 1)}, -1, torch::kInt64);
  auto s = scores.accessor<float, 2>();
  for (int64_t t = 0; t < c; ++t) {
    std::vector<int64_t> cand;
    for (int64_t k = 0; k < c; ++k) {
      if (k != t && (!head_only || head[k])) cand.push_back(k);
    }
    std::stable_sort(cand.begin(), cand.end(),
                     [&](int64_t a, int64_t b) { return s[a][t] > s[b][t]; });
    for (size_t i = 0; i < cand.size(); ++i) ranked[t][i] = cand[i];
  }
  return ranked;
}

std::vector<int64_t> confusing_classes(const Analysis& a, int64_t t, int64_t nf) {
  std::vector<int64_t> out;
  auto row = a.confusing[t];
  for (int64_t i = 0; i < row.size(0) && static_cast<int64_t>(out.size()) < nf; ++i) {
    const auto c = row[i].item<int64_t>();
    if (c >= 0) out.push_back(c);
  }
  return out;
}

Analysis run_phase_ii(const io::Config& cfg, Workspace& ws, const std::string& checkpoint,
                      const std::string& out_dir) {
  detail::prepare_out_dir(out_dir, cfg, ws.data);
  auto model = detail::build_model(cfg, ws);
  const auto phase_i = load_checkpoint(checkpoint, *model, nullptr);
  model->eval();
  const auto& layer = cfg.feature.cam_layer;
  const auto& train = ws.data.train;
  const int64_t num_classes = ws.data.num_classes();
  auto score_sums = torch::zeros({num_classes, num_classes}, torch::kFloat64);
  std::vector<torch::Tensor> features, cams;
  {
    torch::NoGradGuard no_grad;
    data::SequentialBatches input(ws.data, train, cfg.test.batch_size, ws.device);
    while (auto batch = input.next()) {
      throw_if_interrupted("phase_ii", "its outputs were not written");
      const auto& y = batch->labels;
      auto a = model->features(batch->inputs, layer);
      auto probs = torch::softmax(model->head(a, layer), 1).to(torch::kCPU, torch::kFloat64);
      score_sums.index_add_(0, y.cpu(), probs);
      if (cfg.feature.store) {
        cams.push_back(cam::class_activation_maps(*model, a, y, layer).cpu());
        features.push_back(a.to(torch::kCPU, torch::kHalf));
      }
    }
  }
  auto counts = torch::tensor(ws.data.class_counts, torch::kFloat64).view({num_classes, 1});
  Analysis result;
  result.score_matrix = (score_sums / counts).to(torch::kFloat32);
  result.confusing =
      rank_confusing(result.score_matrix, ws.data.head, cfg.finetune.confusing_from == "head");
  result.fingerprint = ws.data.fingerprint;
  result.arch = model->arch();
  result.cam_layer = layer;
  result.confusing_from = cfg.finetune.confusing_from;
  result.checkpoint = checkpoint;
  result.checkpoint_checksum = phase_i.checksum;

  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  d.insert("score_matrix", result.score_matrix);
  d.insert("confusing", result.confusing);
  d.insert("head", torch::tensor(std::vector<int64_t>(ws.data.head.begin(), ws.data.head.end())));
  d.insert("class_counts", torch::tensor(ws.data.class_counts, torch::kInt64));
  d.insert("fingerprint", fingerprint_dict(result.fingerprint));
  d.insert("arch", result.arch);
  d.insert("cam_layer", result.cam_layer);
  d.insert("confusing_from", result.confusing_from);
  d.insert("checkpoint", checkpoint);
  d.insert("checkpoint_checksum", phase_i.checksum);
  detail::seal(d);
  if (!dist::is_main()) {  // data-parallel: rank 0 writes; the others wait for its files
    dist::world().barrier();
    return result;
  }
  io::write_file_atomic((fs::path(out_dir) / "analysis.pt").string(), io::torch_save_bytes(d));

  std::ostringstream txt;
  txt << fmt::format(
      "# Confusing classes of each tail class (Nf = {}, drawn from {} classes)\n"
      "# S[c][t]: mean softmax score of class t over training images of class c\n",
      cfg.finetune.Nf, cfg.finetune.confusing_from);
  const auto& names = train.class_names;
  auto s = result.score_matrix.accessor<float, 2>();
  for (int64_t t = 0; t < num_classes; ++t) {
    if (ws.data.head[t]) continue;
    txt << fmt::format("{} {} ({} images):", t, names[t], ws.data.class_counts[t]);
    for (auto c : confusing_classes(result, t, cfg.finetune.Nf)) {
      txt << fmt::format("  {} {} (S={:.4f})", c, names[c], s[c][t]);
    }
    txt << "\n";
  }
  io::write_file_atomic((fs::path(out_dir) / "confusing_classes.txt").string(), txt.str());

  if (cfg.feature.store) {
    c10::impl::GenericDict store(c10::StringType::get(), c10::AnyType::get());
    store.insert("features", torch::cat(features, 0).contiguous());
    store.insert("cams", torch::cat(cams, 0));
    store.insert("labels", train.labels.cpu());
    store.insert("fingerprint", fingerprint_dict(result.fingerprint));
    store.insert("cam_layer", layer);
    detail::seal(store);
    io::write_file_atomic((fs::path(out_dir) / "features.pt").string(),
                          io::torch_save_bytes(store));
  }
  spdlog::info("phase_ii: score matrix and confusing classes of {} tail classes written to {}{}",
               std::count(ws.data.head.begin(), ws.data.head.end(), false), out_dir,
               cfg.feature.store ? " (with the offline feature store)" : "");
  dist::world().barrier();
  return result;
}

Analysis load_analysis(const std::string& path) {
  if (!fs::exists(path)) {
    throw CheckpointError(
        fmt::format("Phase II analysis '{}' does not exist (run `fsa extract` "
                    "first)",
                    path));
  }
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  try {
    d = io::with_doubles(io::read_torch_file(path)).toGenericDict();
  } catch (const std::exception& e) {  // unreadable, not a pickle, not a dict
    throw CheckpointError(
        fmt::format("Phase II analysis '{}' is not a readable analysis.pt "
                    "(written by `fsa extract`): {}",
                    path, detail::short_message(e)));
  }
  detail::check_seal(d, path, "Phase II analysis");
  if (!d.contains("score_matrix") || !d.contains("confusing")) {
    throw CheckpointError(fmt::format(
        "'{}' is not a Phase II analysis (it has no score matrix{}); expected the analysis.pt "
        "that `fsa extract` writes",
        path, d.contains("state_dict") ? ": it is a checkpoint" : ""));
  }
  try {
    Analysis a;
    a.score_matrix = d.at("score_matrix").toTensor();
    a.confusing = d.at("confusing").toTensor();
    a.fingerprint = fingerprint_from(d.at("fingerprint").toGenericDict());
    a.arch = d.at("arch").toStringRef();
    a.cam_layer = d.at("cam_layer").toStringRef();
    a.confusing_from = d.at("confusing_from").toStringRef();
    if (d.contains("checkpoint")) a.checkpoint = d.at("checkpoint").toStringRef();
    if (d.contains("checkpoint_checksum")) {
      a.checkpoint_checksum = d.at("checkpoint_checksum").toInt();
    }
    return a;
  } catch (const std::exception& e) {  // unreadable, not a pickle, or not an analysis dict
    throw CheckpointError(
        fmt::format("Phase II analysis '{}' is not a readable analysis.pt "
                    "(written by `fsa extract`): {}",
                    path, detail::short_message(e)));
  }
}

}  // namespace fsa::train
