// What a network costs: its layers' output shapes, parameters and
// multiply-accumulates (MACs) per image, measured with one probe forward.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fsa/models/backbone.h"

namespace fsa::models {

/// One row of a summary: the stem, a residual block, the pooling or the
/// classifier (the names Backbone::forward_visiting reports).
struct LayerSummary {
  std::string name;                   ///< "stem", "layer1.0", ..., "avgpool", "fc"
  std::vector<int64_t> output_shape;  ///< per image, without the batch dimension
  int64_t parameters = 0;             ///< elements of the parameters registered under `name`
  int64_t macs = 0;                   ///< multiply-accumulates per image inside the layer
};

struct ModelSummary {
  std::string arch;
  int64_t num_classes = 0;
  int64_t input_height = 0, input_width = 0;
  std::vector<LayerSummary> layers;
  int64_t parameters = 0;  ///< all parameters (= count_parameters)
  int64_t macs = 0;        ///< per image, the sum over layers
};

/// Runs one 3×`height`×`width` zero image through `model` (evaluation mode,
/// no gradients; the model's training flag is restored) and counts, for every
/// convolution, K_h·K_w·C_in/groups·C_out·H_out·W_out MACs and, for every
/// linear layer (and matrix product), in·out MACs, read from the operators'
/// shapes as they run (ATen RecordFunction observers on aten::convolution,
/// aten::linear, aten::addmm and aten::matmul, outermost call only: the
/// LibTorch counterpart of forward hooks). BatchNorm, ReLU, pooling and the
/// residual additions are not counted, as in torchvision's published GFLOPS.
/// Throws std::invalid_argument if the input is smaller than the network can
/// downsample (the message names the size).
ModelSummary summarize(Backbone& model, int64_t height, int64_t width);

/// summarize(model, height, width).macs.
int64_t count_macs(Backbone& model, int64_t height, int64_t width);

/// The summary as a text table: layer, output shape, parameters, MACs, and a
/// total line.
std::string format_summary(const ModelSummary& summary);

}  // namespace fsa::models
