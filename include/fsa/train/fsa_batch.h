// Phase III's balanced batch (METHOD.md, Phase III), as one public builder
// that Phase III, `fsa bench` and `fsa visualize --fusion` all call:
//  1. GroupSampler draws, for each tail image of the batch, Na images of its
//     confusing classes and 1 + Na images of the head classes;
//  2. FsaBatchBuilder computes their feature maps A = f(x) (online: with
//     training augmentation; offline: from Phase II's store), the class
//     activation maps of the tail and confusing images for their own labels,
//     and the Na fused maps of each tail image (augment/fusion.h);
//  3. the batch is [A_t | fused | A_head] with labels [t | t | own].
//
//   GroupSampler sampler(labels, head, confusing, ft.Na);
//   FsaBatchBuilder builder(model, ws.data, ws.device, layer, ft, bf16, nullptr);
//   auto batch = builder.build(sampler.draw(tail_images, rng), gen);
//   auto logits = model.head(batch.maps, layer);
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include "fsa/augment/fusion.h"
#include "fsa/data/long_tail.h"
#include "fsa/io/config.h"
#include "fsa/models/backbone.h"

namespace fsa::train {

/// The training images of one batch's groups.
struct GroupDraw {
  torch::Tensor tail;   ///< int64 [G]: the tail images, one per group
  torch::Tensor other;  ///< int64 [G·Na]: confusing-class images, group-major
  torch::Tensor head;   ///< int64 [G·(1+Na)]: head-class images, group-major
};

/// Draws the confusing-class and head images of each group (METHOD.md Phase
/// III, steps 2 and 3): the a-th fused map of a tail image of class t uses
/// its confusing class a mod |conf(t)|, an image of it drawn uniformly; the
/// 1 + Na head images are drawn uniformly from all head-class images.
class GroupSampler {
 public:
  /// labels: the training set's labels; head: the head mask of C classes;
  /// confusing[t]: the confusing classes of tail class t (first Nf, in rank
  /// order; ignored for head classes). Throws io::ConfigError (naming
  /// finetune.head_ratio where that is the cure) if there is no tail class,
  /// no head class, a tail class without a confusing class, or a confusing
  /// class without training images.
  GroupSampler(const std::vector<int64_t>& labels, const std::vector<bool>& head,
               const std::vector<std::vector<int64_t>>& confusing, int64_t na);

  /// The tail-class training images, in index order.
  const std::vector<int64_t>& tail() const { return tail_; }

  /// The groups of `tail_images` (training-set indices of tail images),
  /// drawing from `rng`.
  GroupDraw draw(const std::vector<int64_t>& tail_images, std::mt19937_64& rng) const;

 private:
  int64_t na_;
  std::vector<int64_t> labels_;
  std::vector<std::vector<int64_t>> by_class_;
  std::vector<std::vector<int64_t>> confusing_;
  std::vector<int64_t> head_, tail_;
};

/// Feature maps and CAMs of every training image (Phase II's features.pt).
struct FeatureStore {
  torch::Tensor features;  ///< half [N, K, h, w]
  torch::Tensor cams;      ///< float [N, h, w], in [0, 1]
};

/// One Phase III batch and the parts it was made of (for figures and tests).
struct FsaBatch {
  torch::Tensor maps;        ///< float [G·2(1+Na), K, h, w]: A_t, fused, A_head
  torch::Tensor labels;      ///< int64 [G·2(1+Na)]
  torch::Tensor tail_maps;   ///< float [G, K, h, w]
  torch::Tensor tail_cams;   ///< float [G, h, w]
  torch::Tensor other_maps;  ///< float [G·Na, K, h, w]
  torch::Tensor other_cams;  ///< float [G·Na, h, w]
  augment::FusedMaps fused;  ///< maps [G·Na, K, h, w], labels, masks
  int64_t tail_images = 0;   ///< G
};

/// Builds Phase III batches from drawn groups.
class FsaBatchBuilder {
 public:
  /// `store` null: online (feature maps of augmented images through f, in
  /// evaluation mode and under autocast when `bf16_mixed`, CAMs with the
  /// current head); otherwise offline, from the store. `model`, `data` and
  /// `store` must outlive the builder.
  FsaBatchBuilder(models::Backbone& model, const data::LongTailDataset& data, torch::Device device,
                  std::string cam_layer, const io::FinetuneConfig& ft, bool bf16_mixed,
                  const FeatureStore* store);

  /// The batch of `drawn`. Augmentation, γ and the masks draw from `gen`.
  /// `augment` false (figures) takes the images as they are. `groups`
  /// [begin, end): the batch of those groups of `drawn` alone (a
  /// data-parallel rank's share), with every draw made for the whole of
  /// `drawn`, so that the ranks' shares together are one process's batch;
  /// tail_images is then end − begin.
  FsaBatch build(const GroupDraw& drawn, at::Generator gen, bool augment = true,
                 std::optional<std::pair<int64_t, int64_t>> groups = std::nullopt) const;

 private:
  models::Backbone& model_;
  const data::LongTailDataset& data_;
  torch::Device device_;
  std::string layer_;
  io::FinetuneConfig ft_;
  bool bf16_mixed_;
  const FeatureStore* store_;
  torch::Tensor train_labels_;  // int64 [N] on the device
};

}  // namespace fsa::train
