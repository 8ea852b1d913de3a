// `fsa bench` (issue 5, "Speed: every phase near the hardware's limit"): each
// phase's hot loop timed against the bare LibTorch work it cannot avoid, in one
// process, on synthetic in-memory data, as medians over repeated iterations.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace fsa::bench {

struct BenchOptions {
  std::string device = "cpu";    ///< cpu, cuda or cuda:N
  std::string model = "resnet32";
  int64_t batch = 128;           ///< Phase I and Phase III batch (images / feature maps)
  int64_t test_batch = 256;      ///< evaluation and Phase II batch
  int64_t iters = 10;            ///< timed iterations per measurement (medians over these)
  int64_t warmup = 2;            ///< untimed iterations before them
  int64_t threads = 0;           ///< intra-op threads; 0: all hardware threads
  int64_t num_classes = 10;
  int64_t num_images = 4096;     ///< synthetic uint8 32×32 training images held in memory
  int64_t per_image_count = 32;  ///< images per iteration of the per-image Phase II baseline
  int64_t na = 3;                ///< Phase III: fused maps per tail image (groups of 2·(1+Na))
  std::string cam_layer = "layer3";  ///< the CAM layer of Phase II and III
  bool layer2 = true;            ///< also Phase II at layer2 (batched Grad-CAM)
  bool channels_last = true;     ///< also fsa's training step with memory_format channels_last
  bool bf16_mixed = true;        ///< also fsa's training step with precision bf16-mixed
  /// also Phase I's step with the long-tail losses (LDAM-DRW on a cosine
  /// classifier, Balanced Softmax, class-balanced focal) against cross-entropy
  bool losses = true;
  bool jpeg = true;              ///< also JPEG decoding (OpenCV)
  uint64_t seed = 0;
  /// Which measurements run: phase_i, eval, phase_ii, phase_iii, data, floor
  /// (empty: all). Figures of sections left out are null.
  std::vector<std::string> sections;
};

/// Runs every measurement and returns them as one JSON object: the headline
/// figures (phase_i_images_per_s, phase_i_ratio_vs_bare, eval_images_per_s,
/// phase_ii_images_per_s, phase_ii_speedup_vs_per_image,
/// phase_iii_step_ratio_vs_forward, loader_images_per_s, flops_utilisation),
/// one object per phase with its breakdown (times in ms, rates per second),
/// the CPU targets with whether each holds, and the machine (CPU,
/// threads, LibTorch version and build configuration, date).
/// Measurements that are compared are interleaved (one iteration of each per
/// round), so that a noisy machine slows both sides alike; times are
/// wall-clock (steady_clock, after a CUDA synchronize), and the main ratios
/// are also given from process CPU time ("cpu_time"), which other processes
/// on a shared machine do not inflate.
/// Sets the intra-op thread count (options.threads, else all hardware threads).
/// Throws io::ConfigError for an unknown device, std::invalid_argument for an
/// unknown model or layer or a batch too small for one Phase III group.
nlohmann::json run_bench(const BenchOptions& options);

/// The result of run_bench as a readable table (one line per figure).
std::string format_bench(const nlohmann::json& result);

}  // namespace fsa::bench
