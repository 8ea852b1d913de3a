#include "fsa/bench/bench.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <torch/autograd.h>
#include <torch/cuda.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <torch/version.h>

#ifndef FSA_NO_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <ctime>
#include <time.h>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

#include "fsa/augment/fusion.h"
#include "fsa/cam/cam.h"
#include "fsa/data/inputs.h"
#include "fsa/data/transforms.h"
#include "fsa/io/config.h"
#include "fsa/models/backbone.h"
#include "fsa/models/summary.h"
#include "fsa/train/fsa_batch.h"
#include "fsa/train/loss.h"
#include "fsa/train/phases.h"
#include "fsa/train/precision.h"
#include "fsa/train/runtime.h"
#include "../train/internal.h"
#include "fsa/train/schedule.h"

namespace fsa::bench {
namespace {

namespace F = torch::nn::functional;
using nlohmann::json;
using Steps = std::vector<std::function<void()>>;

const std::vector<std::string> kSections{"phase_i", "eval", "phase_ii", "phase_iii", "data",
                                         "floor"};

/// Seconds on a monotonic clock, after the device has finished its queued work.
class Clock {
 public:
  explicit Clock(torch::Device device) : device_(device) {}
  double now() const {
    if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

 private:
  torch::Device device_;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

/// Seconds of CPU time used by the whole process (all threads) so far.
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

/// Seconds per call of each step: `warmup` untimed rounds, then `iters` timed
/// rounds, each calling every step once, in order. Interleaving puts the
/// machine's slow and fast moments on every step alike, so that ratios of
/// steps measured together are steadier than their absolute times. If `cpu`
/// is given, it receives the process CPU seconds of each call too: on a
/// machine shared with other work these count only what the step itself
/// consumed (plus any spinning of idle worker threads).
std::vector<std::vector<double>> run_rounds(const Clock& clock, const Steps& steps,
                                            int64_t warmup, int64_t iters,
                                            std::vector<std::vector<double>>* cpu = nullptr) {
  std::vector<std::vector<double>> seconds(steps.size());
  if (cpu) cpu->assign(steps.size(), {});
  for (int64_t round = 0; round < warmup + iters; ++round) {
    for (size_t i = 0; i < steps.size(); ++i) {
      const double c0 = process_cpu_seconds(), t0 = clock.now();
      steps[i]();
      const double t1 = clock.now(), c1 = process_cpu_seconds();
      if (round >= warmup) {
        seconds[i].push_back(t1 - t0);
        if (cpu) (*cpu)[i].push_back(c1 - c0);
      }
    }
  }
  return seconds;
}

/// Median over rounds of a[r]/b[r]: the ratio measured side by side.
double paired_ratio(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) r.push_back(a[i] / b[i]);
  return median(r);
}

double ms(double seconds) { return 1e3 * seconds; }

/// uint8 images in memory as fsa holds a small-image dataset (on the device),
/// labels i mod C, CIFAR-10's normalisation, as a data::LongTailDataset whose
/// training split is the images (70% of the classes head).
struct SyntheticData {
  torch::Tensor images;  // uint8 [N, 3, 32, 32] on the device
  torch::Tensor labels;  // int64 [N] on the device
  std::vector<int64_t> labels_cpu;
  std::vector<double> mean{0.4914, 0.4822, 0.4465};
  std::vector<double> std{0.2023, 0.1994, 0.2010};
  data::LongTailDataset dataset;
};

SyntheticData make_data(int64_t n, int64_t num_classes, torch::Device device, at::Generator gen) {
  SyntheticData d;
  d.images = torch::randint(0, 256, {n, 3, 32, 32}, gen, torch::kUInt8).to(device);
  auto labels = torch::arange(n, torch::kInt64).remainder(num_classes);
  d.labels_cpu.assign(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + n);
  d.labels = labels.to(device);
  auto& ds = d.dataset;
  for (int64_t c = 0; c < num_classes; ++c) {
    ds.train.class_names.push_back(fmt::format("class_{}", c));
    ds.head.push_back(c < (7 * num_classes + 9) / 10);
  }
  ds.train.images = d.images;
  ds.train.labels = labels;
  ds.class_counts.assign(size_t(num_classes), n / num_classes);
  ds.mean = d.mean;
  ds.std = d.std;
  return d;
}

/// fsa's Phase I input (data::TrainingBatches, as src/train/phase_i.cpp uses
/// it) without end: a new epoch starts when one runs out, and a short last
/// batch is skipped so that every timed step has the full batch.
class EndlessBatches {
 public:
  EndlessBatches(const data::LongTailDataset& ds, int64_t batch, at::Generator gen,
                 torch::Device device)
      : input_(ds, batch, 0, device), batch_(batch), gen_(std::move(gen)) {
    input_.start_epoch(epoch_, gen_);
  }
  data::InputBatch next() {
    while (true) {
      auto b = input_.next();
      if (b && b->labels.size(0) == batch_) return std::move(*b);
      input_.start_epoch(++epoch_, gen_);
    }
  }

 private:
  data::TrainingBatches input_;
  int64_t batch_, epoch_ = 0;
  at::Generator gen_;
};

std::shared_ptr<models::Backbone> new_model(const BenchOptions& o, torch::Device device) {
  torch::manual_seed(o.seed);  // every copy starts from the same weights
  auto model = models::make_model(o.model, o.num_classes);
  model->to(device);
  return model;
}

/// The Phase I recipe's optimiser (METHOD.md: SGD, momentum 0.9, weight decay 2e-4, lr 0.1).
io::OptimizerConfig phase_i_optimizer() {
  io::OptimizerConfig c;
  c.name = "SGD";
  c.lr = 0.1;
  c.momentum = 0.9;
  c.weight_decay = 2e-4;
  return c;
}

// ---------------------------------------------------------------- Phase I

json bench_phase_i(const BenchOptions& o, const Clock& clock, const SyntheticData& d,
                   models::Backbone& model, torch::Device device) {
  const int64_t b = o.batch;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 1);
  EndlessBatches input(d.dataset, b, gen, device);

  // fsa: the loop body of src/train/phase_i.cpp, less progress and logging.
  model.train();
  auto optimizer = train::make_optimizer(phase_i_optimizer(), model.parameters());
  // The phases' running loss and accuracy: kept on the device, read back every
  // batch on the CPU and every 20 batches on a GPU.
  train::detail::RunningStats stats(device, "bench phase_i", 1);
  int64_t fsa_steps = 0;
  // The synthetic set's class counts drive the long-tail losses below.
  const auto& counts = d.dataset.class_counts;
  const train::Criterion cross_entropy(io::LossConfig{}, counts, device);
  auto fsa_step = [&] {
    const auto batch = input.next();
    const auto& y = batch.labels;
    auto logits = model.forward(batch.inputs);
    auto loss = cross_entropy(logits, y, 0);
    optimizer->zero_grad();
    loss.backward();
    optimizer->step();
    stats.add(loss, logits, y, ++fsa_steps);
  };

  // Bare LibTorch: the same network, batch and optimiser on a ready float batch.
  auto bare = new_model(o, device);
  bare->train();
  const auto opts = phase_i_optimizer();
  torch::optim::SGD bare_opt(bare->parameters(), torch::optim::SGDOptions(opts.lr)
                                                     .momentum(opts.momentum)
                                                     .weight_decay(opts.weight_decay));
  auto x_bare = torch::randn({b, 3, 32, 32}, torch::TensorOptions().device(device));
  auto y_bare = torch::randint(0, o.num_classes, {b}, torch::TensorOptions()
                                                            .dtype(torch::kInt64)
                                                            .device(device));
  auto bare_step = [&] {
    auto loss = F::cross_entropy(bare->forward(x_bare), y_bare);
    bare_opt.zero_grad();
    loss.backward();
    bare_opt.step();
  };

  Steps steps{fsa_step, bare_step};

  // fsa's step again, under the two speed options of the config, each on its
  // own copy of the network (same initial weights) and the same batches:
  // memory_format: channels_last and precision: bf16-mixed.
  // Then the long-tail methods' Phase I steps (README, "Methods"): the same
  // step with their loss (and LDAM's cosine classifier), to show what each
  // costs against cross-entropy.
  struct Variant {
    std::string name;
    std::shared_ptr<models::Backbone> model;
    std::unique_ptr<torch::optim::Optimizer> optimizer;
    bool bf16 = false;
    std::unique_ptr<train::detail::RunningStats> stats;
    int64_t steps = 0;
    io::LossConfig loss;
    bool cosine = false;
    std::unique_ptr<train::Criterion> criterion;
  };
  std::vector<Variant> variants;
  auto add_variant = [&](std::string name, bool bf16, io::LossConfig loss, bool cosine) {
    Variant v;
    v.name = std::move(name);
    v.bf16 = bf16;
    v.loss = std::move(loss);
    v.cosine = cosine;
    variants.push_back(std::move(v));
  };
  if (o.channels_last) add_variant("channels_last", false, {}, false);
  if (o.bf16_mixed) add_variant("bf16_mixed", true, {}, false);
  if (o.losses) {
    io::LossConfig ldam_drw;  // Cao et al.'s recipe, timed with its weights on
    ldam_drw.name = "ldam";
    ldam_drw.weighting = "drw";
    ldam_drw.drw_epoch = 0;
    add_variant("loss_ldam_drw", false, ldam_drw, true);
    io::LossConfig balanced;
    balanced.name = "balanced_softmax";
    add_variant("loss_balanced_softmax", false, balanced, false);
    io::LossConfig cb_focal;
    cb_focal.name = "focal";
    cb_focal.weighting = "class_balanced";
    add_variant("loss_cb_focal", false, cb_focal, false);
  }
  for (auto& v : variants) {
    torch::manual_seed(o.seed);
    v.model = models::make_model(o.model, o.num_classes);
    if (v.cosine) v.model->use_cosine_classifier();
    v.model->to(device);
    v.model->use_channels_last(v.name == "channels_last");
    v.model->train();
    v.criterion = std::make_unique<train::Criterion>(v.loss, counts, device);
    v.optimizer = train::make_optimizer(phase_i_optimizer(), v.model->parameters());
    v.stats = std::make_unique<train::detail::RunningStats>(device, "bench " + v.name, 1);
    steps.push_back([&v, &input, device] {
      const auto batch = input.next();
      torch::Tensor logits;
      {
        train::AutocastGuard autocast(device, v.bf16);
        logits = v.model->forward(batch.inputs).to(torch::kFloat32);
      }
      auto loss = (*v.criterion)(logits, batch.labels, 0);
      v.optimizer->zero_grad();
      loss.backward();
      v.optimizer->step();
      v.stats->add(loss, logits, batch.labels, ++v.steps);
    });
  }

  spdlog::info("bench: Phase I training step, fsa vs bare LibTorch{}{}{} ({} + {} rounds)",
               o.channels_last ? ", channels_last" : "", o.bf16_mixed ? ", bf16-mixed" : "",
               o.losses ? ", LDAM-DRW, Balanced Softmax, CB focal" : "", o.warmup, o.iters);
  std::vector<std::vector<double>> c;
  const auto s = run_rounds(clock, steps, o.warmup, o.iters, &c);
  const double t_fsa = median(s[0]), t_bare = median(s[1]);
  stats.sync(fsa_steps);
  json j{{"fsa_step_ms", ms(t_fsa)},
         {"bare_step_ms", ms(t_bare)},
         {"fsa_images_per_s", b / t_fsa},
         {"bare_images_per_s", b / t_bare},
         {"ratio_vs_bare", t_bare / t_fsa},
         {"paired_ratio_vs_bare", paired_ratio(s[1], s[0])},
         {"fsa_mean_loss", stats.mean_loss()},
         {"cpu_time", {{"fsa_step_ms", ms(median(c[0]))},
                       {"bare_step_ms", ms(median(c[1]))},
                       {"ratio_vs_bare", median(c[1]) / median(c[0])}}}};
  for (size_t i = 0; i < variants.size(); ++i) {
    const double t = median(s[2 + i]);
    j[variants[i].name] = {{"fsa_step_ms", ms(t)},
                           {"fsa_images_per_s", b / t},
                           {"speedup_vs_default", t_fsa / t},
                           {"paired_speedup_vs_default", paired_ratio(s[0], s[2 + i])},
                           {"cpu_time_speedup_vs_default", median(c[0]) / median(c[2 + i])}};
  }
  return j;
}

// ---------------------------------------------------------------- evaluation

json bench_eval(const BenchOptions& o, const Clock& clock, const SyntheticData& d,
                models::Backbone& model, torch::Device device) {
  // train::evaluate itself, over a synthetic test set of two test batches.
  const int64_t n = std::min<int64_t>(2 * o.test_batch, d.images.size(0));
  const auto& ds = d.dataset;
  data::ImageSet test;
  test.images = d.images.narrow(0, 0, n);
  test.labels = d.labels.narrow(0, 0, n).cpu();
  test.class_names = ds.train.class_names;
  spdlog::info("bench: evaluation, {} images per call ({} + {} rounds)", n, o.warmup, o.iters);
  std::vector<std::vector<double>> c;
  const auto s = run_rounds(
      clock, {[&] { train::evaluate(model, test, ds, device, o.test_batch); }}, o.warmup,
      o.iters, &c);
  const double t = median(s[0]);
  return {{"images", n},
          {"batch", o.test_batch},
          {"call_ms", ms(t)},
          {"images_per_s", n / t},
          {"cpu_time", {{"call_ms", ms(median(c[0]))}}}};
}

// ---------------------------------------------------------------- Phase II

json bench_phase_ii(const BenchOptions& o, const Clock& clock, const SyntheticData& d,
                    models::Backbone& model, const std::string& layer) {
  model.eval();
  const int64_t tb = o.test_batch, n = d.images.size(0), per_image = o.per_image_count;
  auto score_sums = torch::zeros({o.num_classes, o.num_classes}, torch::kFloat64);
  int64_t start = 0;

  // fsa (src/train/phase_ii.cpp): one no-grad forward of the batch, softmax
  // scores into the score matrix, CAMs from the same feature maps.
  auto fsa_step = [&] {
    torch::NoGradGuard no_grad;
    start = (start + tb) % (n - tb + 1);
    auto x = data::normalize(d.images.narrow(0, start, tb), d.mean, d.std);
    auto y = d.labels.narrow(0, start, tb);
    auto a = model.features(x, layer);
    auto probs = torch::softmax(model.head(a, layer), 1).to(torch::kCPU, torch::kFloat64);
    score_sums.index_add_(0, y.cpu(), probs);
    auto cams = cam::class_activation_maps(model, a, y, layer).cpu();
  };

  // The reference's way (METHOD.md, Phase II: "the reference runs one
  // backward pass per image"): per image, a forward of the whole network with
  // autograd recording, the scores, then zero_grad and backward() of the
  // image's class score, which runs back through every layer to the weights
  // as PyTorch's Grad-CAM hooks do; the CAM layer's gradient is kept
  // (retain_grad), α = its spatial mean, ReLU(Σ α·A), min–max.
  auto per_image_step = [&] {
    for (int64_t i = 0; i < per_image; ++i) {
      const int64_t k = (start + i) % n;
      torch::AutoGradMode grad_mode(true);
      auto x = data::normalize(d.images.narrow(0, k, 1), d.mean, d.std);
      auto a = model.features(x, layer);
      a.retain_grad();
      auto logits = model.head(a, layer);
      auto probs = torch::softmax(logits.detach(), 1).to(torch::kCPU, torch::kFloat64);
      const int64_t c = d.labels_cpu[k];
      score_sums.index_add_(0, torch::tensor({c}), probs);
      model.zero_grad();
      logits[0][c].backward();
      auto alpha = a.grad().mean({2, 3}, /*keepdim=*/true);
      auto cams = cam::normalize_maps(torch::relu((alpha * a.detach()).sum(1))).cpu();
    }
  };

  spdlog::info("bench: Phase II at {} ({}), batch {} vs {} images one at a time ({} + {} rounds)",
               layer, model.head_is_linear(layer) ? "analytic CAM" : "batched Grad-CAM", tb,
               per_image, o.warmup, o.iters);
  std::vector<std::vector<double>> c;
  const auto s = run_rounds(clock, {fsa_step, per_image_step}, o.warmup, o.iters, &c);
  const double t_fsa = median(s[0]), t_ref = median(s[1]);
  std::vector<double> fsa_rate, ref_rate;
  for (double t : s[0]) fsa_rate.push_back(tb / t);
  for (double t : s[1]) ref_rate.push_back(per_image / t);
  return {{"layer", layer},
          {"cam", model.head_is_linear(layer) ? "analytic" : "batched_grad_cam"},
          {"batch", tb},
          {"fsa_batch_ms", ms(t_fsa)},
          {"fsa_images_per_s", tb / t_fsa},
          {"per_image_images", per_image},
          {"per_image_ms_per_image", ms(t_ref / per_image)},
          {"per_image_images_per_s", per_image / t_ref},
          {"speedup_vs_per_image", (tb / t_fsa) / (per_image / t_ref)},
          {"paired_speedup_vs_per_image", paired_ratio(fsa_rate, ref_rate)},
          {"cpu_time", {{"fsa_batch_ms", ms(median(c[0]))},
                        {"per_image_ms_per_image", ms(median(c[1]) / per_image)},
                        {"speedup_vs_per_image",
                         (median(c[1]) / per_image) / (median(c[0]) / tb)}}}};
}

// ---------------------------------------------------------------- Phase III

json bench_phase_iii(const BenchOptions& o, const Clock& clock, const SyntheticData& d,
                     models::Backbone& model, torch::Device device) {
  const auto& layer = o.cam_layer;
  const int64_t na = o.na, groups = o.batch / (2 * (1 + na));
  const int64_t maps_per_batch = groups * 2 * (1 + na);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 3);
  // Phase III's own sampler and batch builder (train/fsa_batch.h), on the
  // synthetic split: every tail class confused with the first Na head classes.
  std::vector<std::vector<int64_t>> confusing(size_t(o.num_classes));
  for (int64_t t = 0; t < o.num_classes; ++t) {
    if (d.dataset.head[size_t(t)]) continue;
    for (int64_t c = 0; c < o.num_classes && int64_t(confusing[size_t(t)].size()) < na; ++c) {
      if (d.dataset.head[size_t(c)]) confusing[size_t(t)].push_back(c);
    }
  }
  train::GroupSampler sampler(d.labels_cpu, d.dataset.head, confusing, na);
  io::FinetuneConfig ft;  // the reference's ts = 0.8, tg = 0.2 (METHOD.md)
  ft.Na = na;
  train::FsaBatchBuilder builder(model, d.dataset, device, layer, ft, /*bf16_mixed=*/false,
                                 /*store=*/nullptr);
  std::mt19937_64 rng(o.seed + 4);
  std::uniform_int_distribution<size_t> pick_tail(0, sampler.tail().size() - 1);
  model.set_finetune_mode(layer);
  io::OptimizerConfig oc;  // the reference's Phase III optimiser (METHOD.md)
  oc.name = "SGD";
  oc.lr = 5e-4;
  oc.momentum = 0.9;
  auto optimizer = train::make_optimizer(oc, model.head_parameters(layer));

  // Phase III's online step: the builder, then the head update. With
  // `split`, the clock is read between drawing, building and updating.
  std::vector<std::array<double, 3>> parts;
  train::detail::RunningStats stats(device, "bench phase_iii", 1);
  int64_t steps = 0;
  auto step = [&](bool split) {
    std::array<double, 4> t{};
    if (split) t[0] = clock.now();
    std::vector<int64_t> tail_images;
    for (int64_t g = 0; g < groups; ++g) tail_images.push_back(sampler.tail()[pick_tail(rng)]);
    const auto drawn = sampler.draw(tail_images, rng);
    if (split) t[1] = clock.now();
    const auto batch = builder.build(drawn, gen);
    if (split) t[2] = clock.now();
    auto logits = model.head(batch.maps, layer);
    auto loss = F::cross_entropy(logits, batch.labels);
    optimizer->zero_grad();
    loss.backward();
    optimizer->step();
    stats.add(loss, logits, batch.labels, ++steps);
    if (split) {
      t[3] = clock.now();
      parts.push_back({t[1] - t[0], t[2] - t[1], t[3] - t[2]});
    }
  };

  // What it cannot do without: f over the same number of images, no grad.
  auto x_ready = torch::randn({maps_per_batch, 3, 32, 32}, torch::TensorOptions().device(device));
  auto forward_only = [&] {
    torch::NoGradGuard no_grad;
    auto a = model.features(x_ready, layer);
  };

  spdlog::info("bench: Phase III online step ({} groups, {} maps) vs f forward ({} + {} rounds)",
               groups, maps_per_batch, o.warmup, o.iters);
  std::vector<std::vector<double>> c;
  const auto s = run_rounds(clock, {[&] { step(false); }, forward_only, [&] { step(true); }},
                            o.warmup, o.iters, &c);
  const double t_step = median(s[0]), t_fwd = median(s[1]);
  json breakdown;
  // "build": images, f, CAMs and fusion (train::FsaBatchBuilder::build).
  const char* names[] = {"draw", "build", "head_update"};
  for (size_t p = 0; p < 3; ++p) {
    std::vector<double> v;
    for (size_t r = static_cast<size_t>(o.warmup); r < parts.size(); ++r) v.push_back(parts[r][p]);
    breakdown[std::string(names[p]) + "_ms"] = ms(median(v));
  }
  return {{"layer", layer},
          {"groups", groups},
          {"maps_per_batch", maps_per_batch},
          {"step_ms", ms(t_step)},
          {"forward_ms", ms(t_fwd)},
          {"step_ratio_vs_forward", t_step / t_fwd},
          {"paired_step_ratio_vs_forward", paired_ratio(s[0], s[1])},
          {"split_step_ms", ms(median(s[2]))},
          {"cpu_time", {{"step_ms", ms(median(c[0]))},
                        {"forward_ms", ms(median(c[1]))},
                        {"step_ratio_vs_forward", median(c[0]) / median(c[1])}}},
          {"breakdown", breakdown}};
}

// ---------------------------------------------------------------- data

json bench_loader(const BenchOptions& o, const Clock& clock, const SyntheticData& d,
                  torch::Device device) {
  const int64_t b = o.batch;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 5);
  EndlessBatches input(d.dataset, b, gen, device);
  auto fixed = d.images.narrow(0, 0, b).clone();
  auto loader = [&] { auto x = input.next().inputs; };
  auto crop_only = [&] { auto x = data::random_crop_flip(fixed, 4, gen); };
  auto normalize_only = [&] { auto x = data::normalize(fixed, d.mean, d.std); };
  spdlog::info("bench: in-memory batches (index, crop/flip, normalise) ({} + {} rounds)",
               o.warmup, o.iters);
  const auto s = run_rounds(clock, {loader, crop_only, normalize_only}, o.warmup, o.iters);
  return {{"batch", b},
          {"batch_ms", ms(median(s[0]))},
          {"images_per_s", b / median(s[0])},
          {"crop_flip_ms", ms(median(s[1]))},
          {"normalize_ms", ms(median(s[2]))}};
}

#ifndef FSA_NO_OPENCV
/// JPEG bytes of photo-like random images: smooth random colour fields
/// (bilinear up-sampling of an 8× smaller random image) with mild noise.
std::vector<std::vector<uchar>> make_jpegs(int width, int height, int count, uint64_t seed) {
  cv::RNG rng(seed);
  std::vector<std::vector<uchar>> out;
  for (int i = 0; i < count; ++i) {
    cv::Mat small(std::max(1, height / 8), std::max(1, width / 8), CV_8UC3), image, noise;
    rng.fill(small, cv::RNG::UNIFORM, 0, 256);
    cv::resize(small, image, cv::Size(width, height), 0, 0, cv::INTER_LINEAR);
    noise.create(image.size(), CV_8UC3);
    rng.fill(noise, cv::RNG::UNIFORM, 0, 16);
    image += noise;
    std::vector<uchar> bytes;
    cv::imencode(".jpg", image, bytes, {cv::IMWRITE_JPEG_QUALITY, 90});
    out.push_back(std::move(bytes));
  }
  return out;
}

/// Decodes every buffer as data::decode_images does a file (colour, BGR → RGB),
/// over `threads` threads.
void decode_all(const std::vector<std::vector<uchar>>& jpegs, int threads) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < jpegs.size(); i = next++) {
      cv::Mat m = cv::imdecode(jpegs[i], cv::IMREAD_COLOR);
      cv::cvtColor(m, m, cv::COLOR_BGR2RGB);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
}

json bench_jpeg(const BenchOptions& o, const Clock& clock) {
  json j = json::array();
  // OpenCV's own thread pool would blur "1 thread"; it is off while timing.
  const int cv_threads = cv::getNumThreads();
  cv::setNumThreads(1);
  for (const auto& [w, h, count] : std::vector<std::array<int, 3>>{{32, 32, 1024}, {500, 375, 48}}) {
    const auto jpegs = make_jpegs(w, h, count, o.seed + 6);
    size_t bytes = 0;
    for (const auto& b : jpegs) bytes += b.size();
    spdlog::info("bench: JPEG decoding {}x{}, {} images, 1 and 2 threads ({} + {} rounds)", w, h,
                 count, std::min<int64_t>(o.warmup, 1), o.iters);
    const auto s = run_rounds(clock, {[&] { decode_all(jpegs, 1); }, [&] { decode_all(jpegs, 2); }},
                              std::min<int64_t>(o.warmup, 1), o.iters);
    j.push_back({{"width", w},
                 {"height", h},
                 {"images", count},
                 {"mean_bytes", double(bytes) / count},
                 {"images_per_s_1_thread", count / median(s[0])},
                 {"images_per_s_2_threads", count / median(s[1])}});
  }
  cv::setNumThreads(cv_threads);
  return j;
}

#endif  // FSA_NO_OPENCV

// ---------------------------------------------------------------- floor

json bench_matmul(const BenchOptions& o, const Clock& clock, torch::Device device) {
  const int64_t n = 2048;
  auto a = torch::randn({n, n}, torch::TensorOptions().device(device));
  auto b = torch::randn({n, n}, torch::TensorOptions().device(device));
  spdlog::info("bench: float32 matrix multiply {}x{} ({} + {} rounds)", n, n, o.warmup, o.iters);
  std::vector<std::vector<double>> c;
  const auto s = run_rounds(clock, {[&] { auto p = torch::mm(a, b); }}, o.warmup, o.iters, &c);
  const double flops = 2.0 * n * n * n;
  return {{"size", n},
          {"ms", ms(median(s[0]))},
          {"flops_per_s", flops / median(s[0])},
          {"cpu_time", {{"ms", ms(median(c[0]))}}}};
}

// ---------------------------------------------------------------- machine

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

std::string utc_now() {
  const auto t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// The value of `key=` in at::show_config()'s "  - Build settings: A=1, B=2" line.
std::string build_setting(const std::string& config, const std::string& key) {
  const auto at = config.find(key + "=");
  if (at == std::string::npos) return "";
  const auto from = at + key.size() + 1;
  const auto to = config.find_first_of(",\n", from);
  return config.substr(from, to == std::string::npos ? std::string::npos : to - from);
}

json machine(torch::Device device) {
  const auto config = at::show_config();
  return {{"cpu", cpu_model()},
          {"hardware_threads", std::thread::hardware_concurrency()},
          {"torch_threads", at::get_num_threads()},
          {"device", device.str()},
          {"libtorch", TORCH_VERSION},
          {"blas", build_setting(config, "BLAS_INFO")},
          {"use_mkldnn", build_setting(config, "USE_MKLDNN")},
          {"mkldnn", at::get_mkldnn_version()},
          {"openmp", at::get_openmp_version()},
#ifndef FSA_NO_OPENCV
          {"opencv", CV_VERSION},
#else
          {"opencv", nullptr},
#endif
          {"malloc_retains_freed_memory", train::freed_memory_retained()},
          {"torch_config", config},
          {"date", utc_now()}};
}

/// The 1, 5 and 15-minute load averages: how busy the machine was.
std::vector<double> load_average() {
  std::ifstream in("/proc/loadavg");
  std::vector<double> v(3, -1.0);
  in >> v[0] >> v[1] >> v[2];
  return v;
}

void validate(const BenchOptions& o) {
  auto fail = [](const std::string& m) { throw io::ConfigError("fsa bench: " + m); };
  if (o.iters < 1) fail(fmt::format("--iters must be >= 1, got {}", o.iters));
  if (o.warmup < 0) fail(fmt::format("--warmup must be >= 0, got {}", o.warmup));
  if (o.threads < 0) fail(fmt::format("--threads must be >= 0, got {}", o.threads));
  if (o.na < 1) fail(fmt::format("Na must be >= 1, got {}", o.na));
  const bool phase_iii = o.sections.empty() || std::find(o.sections.begin(), o.sections.end(),
                                                          "phase_iii") != o.sections.end();
  if (o.batch < 1) fail(fmt::format("--batch must be >= 1, got {}", o.batch));
  if (phase_iii && o.batch < 2 * (1 + o.na)) {
    fail(fmt::format("--batch {} holds no Phase III group of 2*(1+Na) = {} maps", o.batch,
                     2 * (1 + o.na)));
  }
  if (o.test_batch < 1) fail(fmt::format("--test-batch must be >= 1, got {}", o.test_batch));
  if (o.num_classes < 2) fail("at least 2 classes are needed (head and tail)");
  if (o.per_image_count < 1) fail("--per-image must be >= 1");
  for (const auto& s : o.sections) {
    if (std::find(kSections.begin(), kSections.end(), s) == kSections.end()) {
      fail(fmt::format("unknown section '{}'; expected one of {}", s, fmt::join(kSections, ", ")));
    }
  }
  if (o.num_images < std::max({o.batch, o.test_batch, o.per_image_count, o.num_classes})) {
    fail(fmt::format("--images {} is smaller than a batch", o.num_images));
  }
}

json target(const std::string& name, double value, const std::string& op, double bound) {
  const bool holds = op == ">=" ? value >= bound : value <= bound;
  return {{"figure", name}, {"value", value}, {"target", fmt::format("{} {}", op, bound)},
          {"holds", holds}};
}

}  // namespace

nlohmann::json run_bench(const BenchOptions& o) {
  validate(o);
  const auto device = train::parse_device(o.device);
  // As make_workspace: fixed shapes every step, so let cuDNN pick its
  // fastest convolutions once.
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  const auto hw = std::max(1u, std::thread::hardware_concurrency());
  torch::set_num_threads(o.threads > 0 ? static_cast<int>(o.threads) : static_cast<int>(hw));
  const Clock clock(device);

  std::shared_ptr<models::Backbone> model;
  try {
    model = new_model(o, device);
    model->channels_at(o.cam_layer);
  } catch (const std::invalid_argument& e) {
    throw io::ConfigError(fmt::format("fsa bench: {}", e.what()));
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const auto d = make_data(o.num_images, o.num_classes, device, gen);

  json r;
  r["model"] = o.model;
  r["batch"] = o.batch;
  r["test_batch"] = o.test_batch;
  r["iters"] = o.iters;
  r["warmup"] = o.warmup;
  r["threads"] = at::get_num_threads();
  r["machine"] = machine(device);
  r["machine"]["load_average_before"] = load_average();

  auto wanted = [&](const std::string& s) {
    return o.sections.empty() || std::find(o.sections.begin(), o.sections.end(), s) !=
                                     o.sections.end();
  };
  // A multiply-accumulate is two floating-point operations.
  const int64_t fwd_flops = 2 * models::count_macs(*model, 32, 32);
  if (wanted("phase_i")) r["phase_i"] = bench_phase_i(o, clock, d, *model, device);
  if (wanted("eval")) r["eval"] = bench_eval(o, clock, d, *model, device);
  if (wanted("phase_ii")) {
    r["phase_ii"][o.cam_layer] = bench_phase_ii(o, clock, d, *model, o.cam_layer);
    const auto& stages = model->stage_names();
    const auto it = std::find(stages.begin(), stages.end(), o.cam_layer);
    if (o.layer2 && it != stages.begin() && it != stages.end()) {
      // One stage before the CAM layer, where CAMs need the batched Grad-CAM.
      r["phase_ii"][*(it - 1)] = bench_phase_ii(o, clock, d, *model, *(it - 1));
    }
  }
  if (wanted("phase_iii")) r["phase_iii"] = bench_phase_iii(o, clock, d, *model, device);
  if (wanted("data")) {
    r["data"] = bench_loader(o, clock, d, device);
#ifndef FSA_NO_OPENCV
    if (o.jpeg) r["data"]["jpeg"] = bench_jpeg(o, clock);
#endif
  }
  const double train_flops = 3.0 * double(fwd_flops);
  r["floor"] = {{"forward_flops_per_image", fwd_flops}, {"training_flops_per_image", train_flops}};
  if (wanted("floor")) r["floor"]["matmul"] = bench_matmul(o, clock, device);
  r["machine"]["load_average_after"] = load_average();

  // Headline figures (null where their section did not run) and the issue's
  // CPU targets.
  auto at_path = [&](const std::string& pointer) -> json {
    const json::json_pointer p(pointer);
    return r.contains(p) ? r[p] : json(nullptr);
  };
  const auto phase_ii = "/phase_ii/" + o.cam_layer;
  r["phase_i_images_per_s"] = at_path("/phase_i/fsa_images_per_s");
  r["phase_i_ratio_vs_bare"] = at_path("/phase_i/ratio_vs_bare");
  r["eval_images_per_s"] = at_path("/eval/images_per_s");
  r["phase_ii_images_per_s"] = at_path(phase_ii + "/fsa_images_per_s");
  r["phase_ii_speedup_vs_per_image"] = at_path(phase_ii + "/speedup_vs_per_image");
  r["phase_iii_step_ratio_vs_forward"] = at_path("/phase_iii/step_ratio_vs_forward");
  r["loader_images_per_s"] = at_path("/data/images_per_s");
  r["flops_utilisation"] = nullptr;
  r["loader_ratio_vs_phase_i"] = nullptr;
  const bool have_phase_i = r.contains("phase_i");
  if (have_phase_i) {
    const double rate = r["phase_i_images_per_s"];
    r["floor"]["phase_i_flops_per_s"] = train_flops * rate;
    r["floor"]["bare_flops_per_s"] = train_flops * r["phase_i"]["bare_images_per_s"].get<double>();
    if (r["floor"].contains("matmul")) {
      r["flops_utilisation"] = train_flops * rate / r["floor"]["matmul"]["flops_per_s"].get<double>();
    }
    if (r.contains("data")) {
      r["loader_ratio_vs_phase_i"] = r["loader_images_per_s"].get<double>() / rate;
    }
  }
  if (r.contains("eval")) {
    r["floor"]["eval_flops_per_s"] = double(fwd_flops) * r["eval_images_per_s"].get<double>();
  }
  r["targets"] = json::array();
  auto add_target = [&](const std::string& name, const std::string& op, double bound) {
    if (!r[name].is_null()) r["targets"].push_back(target(name, r[name].get<double>(), op, bound));
  };
  add_target("phase_i_ratio_vs_bare", ">=", 0.95);
  add_target("phase_ii_speedup_vs_per_image", ">=", 50);
  add_target("phase_iii_step_ratio_vs_forward", "<=", 1.3);
  add_target("loader_ratio_vs_phase_i", ">=", 3);
  return r;
}

std::string format_bench(const json& r) {
  std::ostringstream os;
  auto num = [](const json& v) { return v.get<double>(); };
  const auto& m = r["machine"];
  os << fmt::format("fsa bench: {} on {} ({} threads, {}), batch {}, test batch {}, medians of {} "
                    "iterations after {} warm-up\n",
                    r["model"].get<std::string>(), m["cpu"].get<std::string>(),
                    r["threads"].get<int>(), m["device"].get<std::string>(), r["batch"].get<int>(),
                    r["test_batch"].get<int>(), r["iters"].get<int>(), r["warmup"].get<int>());
  auto row = [&](const std::string& name, const std::string& value) {
    os << fmt::format("  {:<54} {}\n", name, value);
  };
  auto rate = [&](double milliseconds, double per_s) {
    return fmt::format("{:9.2f} ms {:9.1f} img/s", milliseconds, per_s);
  };
  if (r.contains("phase_i")) {
    const auto& p = r["phase_i"];
    os << "Phase I (training step)\n";
    row("fsa: index, crop/flip, normalise, fwd, CE, bwd, SGD",
        rate(num(p["fsa_step_ms"]), num(p["fsa_images_per_s"])));
    row("bare LibTorch on a ready float batch",
        rate(num(p["bare_step_ms"]), num(p["bare_images_per_s"])));
    row("ratio fsa/bare (images/s)",
        fmt::format("{:9.3f}  (paired {:.3f}, CPU time {:.3f})", num(p["ratio_vs_bare"]),
                    num(p["paired_ratio_vs_bare"]), num(p["cpu_time"]["ratio_vs_bare"])));
    const std::pair<const char*, const char*> variants[] = {
        {"channels_last", "fsa, memory_format: channels_last"},
        {"bf16_mixed", "fsa, precision: bf16-mixed"},
        {"loss_ldam_drw", "fsa, LDAM-DRW (cosine classifier)"},
        {"loss_balanced_softmax", "fsa, Balanced Softmax"},
        {"loss_cb_focal", "fsa, class-balanced focal"}};
    for (const auto& [name, title] : variants) {
      if (!p.contains(name)) continue;
      const auto& v = p[name];
      row(title, rate(num(v["fsa_step_ms"]), num(v["fsa_images_per_s"])));
      row("  speedup over the default (fp32, contiguous, CE)",
          fmt::format("{:9.3f}  (paired {:.3f}, CPU time {:.3f})", num(v["speedup_vs_default"]),
                      num(v["paired_speedup_vs_default"]),
                      num(v["cpu_time_speedup_vs_default"])));
    }
  }
  if (r.contains("eval")) {
    const auto& e = r["eval"];
    os << "Evaluation (train::evaluate, no grad)\n";
    row(fmt::format("{} images at batch {}", e["images"].get<int>(), e["batch"].get<int>()),
        rate(num(e["call_ms"]), num(e["images_per_s"])));
  }
  if (r.contains("phase_ii")) {
    os << "Phase II (scores + CAMs)\n";
    for (const auto& [layer, p] : r["phase_ii"].items()) {
      row(fmt::format("fsa at {} ({}), batch {}", layer, p["cam"].get<std::string>(),
                      p["batch"].get<int>()),
          rate(num(p["fsa_batch_ms"]), num(p["fsa_images_per_s"])));
      row(fmt::format("one image at a time (forward + backward) at {}", layer),
          rate(num(p["per_image_ms_per_image"]), num(p["per_image_images_per_s"])) + " (per image)");
      row(fmt::format("speedup at {}", layer),
          fmt::format("{:9.2f}  (paired {:.2f}, CPU time {:.2f})",
                      num(p["speedup_vs_per_image"]), num(p["paired_speedup_vs_per_image"]),
                      num(p["cpu_time"]["speedup_vs_per_image"])));
    }
  }
  if (r.contains("phase_iii")) {
    const auto& p = r["phase_iii"];
    os << "Phase III (online fine-tuning step)\n";
    row(fmt::format("step: {} groups, {} maps", p["groups"].get<int>(),
                    p["maps_per_batch"].get<int>()),
        fmt::format("{:9.2f} ms", num(p["step_ms"])));
    row("f forward of as many images, no grad", fmt::format("{:9.2f} ms", num(p["forward_ms"])));
    row("ratio step/forward",
        fmt::format("{:9.3f}  (paired {:.3f}, CPU time {:.3f})", num(p["step_ratio_vs_forward"]),
                    num(p["paired_step_ratio_vs_forward"]),
                    num(p["cpu_time"]["step_ratio_vs_forward"])));
    const auto& b = p["breakdown"];
    row("draw / build (f, CAM, fusion) / head update (ms)",
        fmt::format("{:.2f} / {:.2f} / {:.2f}", num(b["draw_ms"]), num(b["build_ms"]),
                    num(b["head_update_ms"])));
  }
  if (r.contains("data")) {
    const auto& d = r["data"];
    os << "Data\n";
    row(fmt::format("in memory, batch of {}: index, crop/flip, normalise", d["batch"].get<int>()),
        rate(num(d["batch_ms"]), num(d["images_per_s"])));
    row("crop/flip alone / normalise alone",
        fmt::format("{:.3f} ms / {:.3f} ms", num(d["crop_flip_ms"]), num(d["normalize_ms"])));
    if (d.contains("jpeg")) {
      for (const auto& j : d["jpeg"]) {
        row(fmt::format("JPEG decode {}x{} (~{:.0f} B), 1 / 2 threads", j["width"].get<int>(),
                        j["height"].get<int>(), num(j["mean_bytes"])),
            fmt::format("{:9.0f} / {:.0f} img/s", num(j["images_per_s_1_thread"]),
                        num(j["images_per_s_2_threads"])));
      }
    }
  }
  const auto& f = r["floor"];
  os << "Floor\n";
  row("forward FLOPs per image (training: 3x)",
      fmt::format("{:9.1f} M", 1e-6 * num(f["forward_flops_per_image"])));
  if (f.contains("matmul")) {
    row("float32 mm 2048x2048", fmt::format("{:9.2f} ms {:9.1f} GFLOP/s", num(f["matmul"]["ms"]),
                                            1e-9 * num(f["matmul"]["flops_per_s"])));
  }
  if (f.contains("phase_i_flops_per_s")) {
    row("Phase I training rate (bare)",
        fmt::format("{:9.2f} GFLOP/s ({:.2f})", 1e-9 * num(f["phase_i_flops_per_s"]),
                    1e-9 * num(f["bare_flops_per_s"])));
  }
  if (!r["flops_utilisation"].is_null()) {
    row("flops_utilisation (Phase I / mm)", fmt::format("{:9.3f}", num(r["flops_utilisation"])));
  }
  os << "Targets (CPU)\n";
  for (const auto& t : r["targets"]) {
    row(t["figure"].get<std::string>(),
        fmt::format("{:9.3f}  {:<8} {}", num(t["value"]), t["target"].get<std::string>(),
                    t["holds"].get<bool>() ? "holds" : "MISSES"));
  }
  const auto& before = m["load_average_before"];
  const auto& after = m["load_average_after"];
  os << fmt::format("load average (1 min) before / after: {:.2f} / {:.2f}; malloc keeps freed "
                    "memory: {}\n", num(before[0]), num(after[0]),
                    m.value("malloc_retains_freed_memory", false) ? "yes" : "no");
  return os.str();
}

}  // namespace fsa::bench
