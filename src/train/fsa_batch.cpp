#include "fsa/train/fsa_batch.h"

#include <fmt/format.h>

#include "fsa/cam/cam.h"
#include "fsa/data/inputs.h"
#include "fsa/train/precision.h"

namespace fsa::train {

GroupSampler::GroupSampler(const std::vector<int64_t>& labels, const std::vector<bool>& head,
                           const std::vector<std::vector<int64_t>>& confusing, int64_t na)
    : na_(na), labels_(labels), by_class_(head.size()), confusing_(head.size()) {
  for (size_t i = 0; i < labels.size(); ++i) {
    by_class_.at(size_t(labels[i])).push_back(int64_t(i));
    if (head[size_t(labels[i])]) {
      head_.push_back(int64_t(i));
    } else {
      tail_.push_back(int64_t(i));
    }
  }
  if (tail_.empty()) {
    throw io::ConfigError(
        "Phase III: every class is a head class, so there is nothing to "
        "augment; lower finetune.head_ratio or list finetune.head_classes");
  }
  if (head_.empty()) {
    throw io::ConfigError("Phase III: no head classes; raise finetune.head_ratio");
  }
  for (size_t t = 0; t < head.size(); ++t) {
    if (head[t] || by_class_[t].empty()) continue;
    if (t >= confusing.size() || confusing[t].empty()) {
      throw io::ConfigError(fmt::format("Phase III: tail class {} has no confusing class", t));
    }
    for (auto c : confusing[t]) {
      if (c < 0 || size_t(c) >= head.size() || by_class_[size_t(c)].empty()) {
        throw io::ConfigError(
            fmt::format("Phase III: confusing class {} of tail class {} has "
                        "no training image",
                        c, t));
      }
    }
    confusing_[t] = confusing[t];
  }
}

GroupDraw GroupSampler::draw(const std::vector<int64_t>& tail_images, std::mt19937_64& rng) const {
  std::vector<int64_t> other, head;
  for (auto i : tail_images) {
    const auto& conf = confusing_[size_t(labels_[size_t(i)])];
    for (int64_t a = 0; a < na_; ++a) {
      const auto& pool = by_class_[size_t(conf[size_t(a) % conf.size()])];
      other.push_back(pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)]);
    }
    for (int64_t a = 0; a < 1 + na_; ++a) {
      head.push_back(head_[std::uniform_int_distribution<size_t>(0, head_.size() - 1)(rng)]);
    }
  }
  return {torch::tensor(tail_images, torch::kInt64), torch::tensor(other, torch::kInt64),
          torch::tensor(head, torch::kInt64)};
}

FsaBatchBuilder::FsaBatchBuilder(models::Backbone& model, const data::LongTailDataset& data,
                                 torch::Device device, std::string cam_layer,
                                 const io::FinetuneConfig& ft, bool bf16_mixed,
                                 const FeatureStore* store)
    : model_(model),
      data_(data),
      device_(device),
      layer_(std::move(cam_layer)),
      ft_(ft),
      bf16_mixed_(bf16_mixed),
      store_(store),
      train_labels_(data.train.labels.to(device)) {}

FsaBatch FsaBatchBuilder::build(const GroupDraw& drawn, at::Generator gen, bool augment,
                                std::optional<std::pair<int64_t, int64_t>> groups) const {
  const int64_t g_all = drawn.tail.size(0), na = ft_.Na;
  const auto [g0, g1] = groups.value_or(std::pair<int64_t, int64_t>{0, g_all});
  // The share's images in [tail | other | head] of the whole draw: its
  // groups' tail images, their Na confusing and 1 + Na head images.
  torch::Tensor keep;
  if (g0 != 0 || g1 != g_all) {
    const int64_t other_at = g_all, head_at = g_all + drawn.other.size(0);
    keep = torch::cat({torch::arange(g0, g1), torch::arange(other_at + g0 * na, other_at + g1 * na),
                       torch::arange(head_at + g0 * (1 + na), head_at + g1 * (1 + na))});
  }
  const auto whole = torch::cat({drawn.tail, drawn.other, drawn.head});
  const auto n_tail = g1 - g0, n_other = n_tail * na;
  auto all = (keep.defined() ? whole.index_select(0, keep) : whole).to(device_);
  auto y_all = train_labels_.index_select(0, all);
  torch::Tensor maps, cams_t, cams_o;
  if (store_) {
    auto cpu_idx = all.cpu();
    maps = store_->features.index_select(0, cpu_idx).to(device_, torch::kFloat32);
    auto cams = store_->cams.index_select(0, cpu_idx.narrow(0, 0, n_tail + n_other)).to(device_);
    cams_t = cams.narrow(0, 0, n_tail);
    cams_o = cams.narrow(0, n_tail, n_other);
  } else {
    torch::NoGradGuard no_grad;
    AutocastGuard autocast(device_, bf16_mixed_);
    auto x = augment ? data::train_inputs(data_, whole.to(device_), gen, device_, keep)
                     : data::eval_inputs(data_, data_.train, all, device_);
    maps = model_.features(x, layer_).to(torch::kFloat32);
  }
  const auto rest = maps.size(0) - n_tail - n_other;
  FsaBatch b;
  b.tail_images = n_tail;
  b.tail_maps = maps.narrow(0, 0, n_tail);
  b.other_maps = maps.narrow(0, n_tail, n_other);
  auto a_h = maps.narrow(0, n_tail + n_other, rest);
  auto y_t = y_all.narrow(0, 0, n_tail), y_o = y_all.narrow(0, n_tail, n_other),
       y_h = y_all.narrow(0, n_tail + n_other, rest);
  if (!store_) {
    cams_t = cam::class_activation_maps(model_, b.tail_maps, y_t, layer_);
    cams_o = cam::class_activation_maps(model_, b.other_maps, y_o, layer_);
  }
  b.tail_cams = cams_t;
  b.other_cams = cams_o;
  const auto k = maps.size(1), h = maps.size(2), w = maps.size(3);
  const auto masks = augment::draw_fusion_masks(g_all, na, h, w, gen).slice(0, g0, g1);
  b.fused =
      augment::fuse_with_masks(b.tail_maps, cams_t, y_t, b.other_maps.view({n_tail, na, k, h, w}),
                               cams_o.view({n_tail, na, h, w}), masks.to(device_), ft_.ts, ft_.tg);
  b.maps = torch::cat({b.tail_maps, b.fused.maps, a_h});
  b.labels = torch::cat({y_t, b.fused.labels, y_h});
  return b;
}

}  // namespace fsa::train
