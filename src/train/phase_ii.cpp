// Phase II: score matrix, confusing classes and the offline feature store
// (METHOD.md). Runs the Phase I network in evaluation mode over the training
// set without augmentation.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/serialize.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <sstream>

#include "fsa/cam/cam.h"
#include "fsa/data/inputs.h"
#include "fsa/dist/dist.h"
#include "fsa/io/files.h"
#include "fsa/io/torch_file.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/confusing.h"
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
  ConfusingRanking ranking(head_only ? head : std::vector<bool>(size_t(c), true),
                           std::max<int64_t>(c - 1, 1));
  const auto s = scores.to(torch::kFloat);
  for (int64_t k = 0; k < c; ++k) ranking.add_row(k, s[k]);
  return ranking.classes();
}

std::vector<int64_t> confusing_classes(const Analysis& a, int64_t t, int64_t nf) {
  std::vector<int64_t> out;
  auto row = a.confusing[t];
  for (int64_t i = 0; i < row.size(0) && static_cast<int64_t>(out.size()) < nf; ++i) {
    const auto c = row[i].item<int64_t>();
    if (c >= 0) out.push_back(c);
  }
  const int64_t kept = row.size(0);
  const bool more_unkept = kept + 1 < a.confusing.size(0) && row[kept - 1].item<int64_t>() >= 0;
  if (nf > kept && more_unkept) {
    throw CheckpointError(fmt::format(
        "the Phase II analysis of '{}' keeps {} confusing classes per class and finetune.Nf is "
        "{}: run Phase II (`fsa extract`) again with finetune.Nf {} (it keeps max(Nf, {}))",
        a.checkpoint, kept, nf, nf, kKeptConfusing));
  }
  return out;
}

namespace {

/// The classes [first, last) of rank `rank` of `ranks` in Phase II: in
/// class order, each class goes to the rank in whose equal share of the
/// images its first image falls, so the ranges are contiguous and cover
/// every class once ({0, 0} for a rank with no class).
std::pair<int64_t, int64_t> class_range(const std::vector<int64_t>& counts, int rank, int ranks) {
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  int64_t first = -1, last = -1, start = 0;
  for (int64_t k = 0; k < static_cast<int64_t>(counts.size()); ++k) {
    const int64_t owner = total > 0 ? std::min<int64_t>(ranks - 1, start * ranks / total) : 0;
    if (owner == rank) {
      if (first < 0) first = k;
      last = k + 1;
    }
    start += counts[size_t(k)];
  }
  return first < 0 ? std::pair<int64_t, int64_t>{0, 0} : std::pair{first, last};
}

/// Every rank's `rows` ([n, ...] with `dims` dimensions, or undefined for
/// none), concatenated in rank order, on every rank.
torch::Tensor gather_rows(const torch::Tensor& rows, int64_t dims, c10::ScalarType dtype,
                          dist::Group& group) {
  auto shape = torch::zeros({dims}, torch::kInt64);
  if (rows.defined()) shape = torch::tensor(rows.sizes().vec(), torch::kInt64);
  const auto shapes = group.all_gather(shape);  // [ranks, dims]
  const auto counts = shapes.select(1, 0);
  const auto filled = counts.gt(0).nonzero();
  if (filled.size(0) == 0) return {};
  auto full = shapes[filled[0][0].item<int64_t>()].clone();
  full[0] = counts.max();
  auto padded = torch::zeros(c10::IntArrayRef(full.data_ptr<int64_t>(), size_t(dims)), dtype);
  if (rows.defined() && rows.size(0) > 0) padded.slice(0, 0, rows.size(0)).copy_(rows);
  const auto all = group.all_gather(padded);
  std::vector<torch::Tensor> parts;
  for (int64_t r = 0; r < all.size(0); ++r)
    parts.push_back(all[r].slice(0, 0, counts[r].item<int64_t>()));
  return torch::cat(parts);
}

}  // namespace

Analysis run_phase_ii(const io::Config& cfg, Workspace& ws, const std::string& checkpoint,
                      const std::string& out_dir) {
  detail::prepare_out_dir(out_dir, cfg, ws.data);
  auto model = detail::build_model(cfg, ws);
  const auto phase_i = load_checkpoint(checkpoint, *model, nullptr);
  model->eval();
  const auto& layer = cfg.feature.cam_layer;
  const auto& train = ws.data.train;
  const int64_t num_classes = ws.data.num_classes();
  auto& group = dist::world();

  // The training images class by class (a stable sort by label), this
  // rank's range of classes of them: one row of the score matrix is summed
  // at a time, and finished when its class's last image has been seen.
  const auto labels = train.labels.cpu();
  const auto counts = labels.bincount({}, num_classes);
  const std::vector<int64_t> class_counts(counts.data_ptr<int64_t>(),
                                          counts.data_ptr<int64_t>() + num_classes);
  const auto [first, last] = class_range(class_counts, group.rank(), group.size());
  const auto order = std::get<1>(labels.sort(/*stable=*/c10::optional<bool>(true), /*dim=*/0));
  const auto offsets = torch::cat({torch::zeros({1}, torch::kInt64), counts.cumsum(0)});
  const auto mine = order.slice(0, offsets[first].item<int64_t>(), offsets[last].item<int64_t>());

  const bool head_only = cfg.finetune.confusing_from == "head";
  const auto candidates = head_only ? ws.data.head : std::vector<bool>(size_t(num_classes), true);
  const int64_t keep =
      std::min(std::max(cfg.finetune.Nf, kKeptConfusing), std::max<int64_t>(num_classes - 1, 1));
  ConfusingRanking ranking(candidates, keep);
  torch::Tensor matrix;  // [C, C], only when asked for
  if (cfg.feature.score_matrix) matrix = torch::zeros({num_classes, num_classes}, torch::kFloat);
  auto row = torch::zeros({num_classes}, torch::kFloat64);
  int64_t current = -1, seen = 0;
  auto finish_row = [&] {
    if (current < 0) return;
    const auto mean = (row / static_cast<double>(seen)).to(torch::kFloat);
    ranking.add_row(current, mean);
    if (matrix.defined()) matrix[current].copy_(mean);
    row.zero_();
    seen = 0;
  };
  std::vector<torch::Tensor> features, cams;
  if (mine.size(0) > 0) {
    torch::NoGradGuard no_grad;
    const auto subset = train.select(mine);
    data::SequentialBatches input(ws.data, subset, cfg.test.batch_size, ws.device);
    while (auto batch = input.next()) {
      throw_if_interrupted("phase_ii", "its outputs were not written");
      const auto& y = batch->labels;
      auto a = model->features(batch->inputs, layer);
      const auto probs = torch::softmax(model->head(a, layer), 1).to(torch::kCPU, torch::kFloat64);
      const auto y_cpu = y.cpu();
      const auto* yv = y_cpu.data_ptr<int64_t>();
      for (int64_t i = 0, n = y_cpu.size(0); i < n;) {  // runs of one class
        int64_t j = i;
        while (j < n && yv[j] == yv[i]) ++j;
        if (yv[i] != current) {
          finish_row();
          current = yv[i];
        }
        row += probs.slice(0, i, j).sum(0);
        seen += j - i;
        i = j;
      }
      if (cfg.feature.store) {
        cams.push_back(cam::class_activation_maps(*model, a, y, layer).cpu());
        features.push_back(a.to(torch::kCPU, torch::kHalf));
      }
    }
  }
  finish_row();
  if (group.size() > 1) {  // every rank's rows: the whole ranking, matrix and store
    const auto classes = group.all_gather(ranking.classes());  // [ranks, C, K]
    const auto scores = group.all_gather(ranking.scores());
    ConfusingRanking all(candidates, keep);
    const auto cv = classes.accessor<int64_t, 3>();
    const auto sv = scores.accessor<float, 3>();
    for (int64_t r = 0; r < classes.size(0); ++r) {
      for (int64_t t = 0; t < num_classes; ++t) {
        for (int64_t i = 0; i < keep && cv[r][t][i] >= 0; ++i)
          all.offer(t, cv[r][t][i], sv[r][t][i]);
      }
    }
    ranking = std::move(all);
    if (matrix.defined()) group.all_reduce_sum_(matrix);
  }
  Analysis result;
  result.score_matrix = matrix;
  result.confusing = ranking.classes();
  result.confusing_scores = ranking.scores();
  result.fingerprint = ws.data.fingerprint;
  result.arch = model->arch();
  result.cam_layer = layer;
  result.confusing_from = cfg.finetune.confusing_from;
  result.checkpoint = checkpoint;
  result.checkpoint_checksum = phase_i.checksum;

  // The offline store in the training set's order, from every rank's images.
  torch::Tensor store_features, store_cams;
  if (cfg.feature.store) {
    const auto cat = [](const std::vector<torch::Tensor>& v) {
      return v.empty() ? torch::Tensor() : torch::cat(v);
    };
    const auto f = gather_rows(cat(features), 4, torch::kHalf, group);
    const auto m = gather_rows(cat(cams), 3, torch::kFloat, group);
    const auto at = gather_rows(mine, 1, torch::kInt64, group);
    store_features = torch::empty_like(f).index_copy_(0, at, f);
    store_cams = torch::empty_like(m).index_copy_(0, at, m);
  }

  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  if (matrix.defined()) d.insert("score_matrix", result.score_matrix);
  d.insert("confusing", result.confusing);
  d.insert("confusing_scores", result.confusing_scores);
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
    group.barrier();
    return result;
  }
  io::write_file_atomic((fs::path(out_dir) / "analysis.pt").string(), io::torch_save_bytes(d));

  std::ostringstream txt;
  txt << fmt::format(
      "# Confusing classes of each tail class (Nf = {}, drawn from {} classes)\n"
      "# S[c][t]: mean softmax score of class t over training images of class c\n",
      cfg.finetune.Nf, cfg.finetune.confusing_from);
  const auto& names = train.class_names;
  const auto kept = result.confusing.accessor<int64_t, 2>();
  const auto kept_scores = result.confusing_scores.accessor<float, 2>();
  for (int64_t t = 0; t < num_classes; ++t) {
    if (ws.data.head[t]) continue;
    txt << fmt::format("{} {} ({} images):", t, names[t], ws.data.class_counts[t]);
    for (int64_t i = 0; i < std::min(cfg.finetune.Nf, keep) && kept[t][i] >= 0; ++i) {
      txt << fmt::format("  {} {} (S={:.4f})", kept[t][i], names[kept[t][i]], kept_scores[t][i]);
    }
    txt << "\n";
  }
  io::write_file_atomic((fs::path(out_dir) / "confusing_classes.txt").string(), txt.str());

  if (cfg.feature.store) {
    c10::impl::GenericDict store(c10::StringType::get(), c10::AnyType::get());
    store.insert("features", store_features.contiguous());
    store.insert("cams", store_cams);
    store.insert("labels", labels);
    store.insert("fingerprint", fingerprint_dict(result.fingerprint));
    store.insert("cam_layer", layer);
    detail::seal(store);
    io::write_file_atomic((fs::path(out_dir) / "features.pt").string(),
                          io::torch_save_bytes(store));
  }
  spdlog::info("phase_ii: confusing classes of {} tail classes{} written to {}{}",
               std::count(ws.data.head.begin(), ws.data.head.end(), false),
               matrix.defined() ? " and the score matrix" : "", out_dir,
               cfg.feature.store ? " (with the offline feature store)" : "");
  group.barrier();
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
  if (!d.contains("confusing")) {
    throw CheckpointError(fmt::format(
        "'{}' is not a Phase II analysis (it has no confusing classes{}); expected the analysis.pt "
        "that `fsa extract` writes",
        path, d.contains("state_dict") ? ": it is a checkpoint" : ""));
  }
  try {
    Analysis a;
    if (d.contains("score_matrix")) a.score_matrix = d.at("score_matrix").toTensor();
    a.confusing = d.at("confusing").toTensor();
    if (d.contains("confusing_scores")) a.confusing_scores = d.at("confusing_scores").toTensor();
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
