#include "fsa/train/checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>
#include <zlib.h>

#include <fstream>

#include "fsa/train/phases.h"
#include "fsa/train/schedule.h"
#include "test_util.h"

namespace fsa::train {
namespace {

using fsa::testing::TempDir;

void take_one_step(models::Backbone& model, torch::optim::Optimizer& opt, int seed) {
  torch::manual_seed(seed);
  model.train();
  auto loss = model.forward(torch::randn({4, 3, 32, 32})).pow(2).mean();
  opt.zero_grad();
  loss.backward();
  opt.step();
}

io::OptimizerConfig momentum_sgd() {
  io::OptimizerConfig o;
  o.momentum = 0.9;
  return o;
}

/// ResNet-20 with 5 classes (initial weights from `seed`) and its SGD optimiser
/// after one step, so that the optimiser holds momentum buffers.
struct SteppedModel {
  std::shared_ptr<models::Backbone> model;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
};

SteppedModel stepped_model(int seed) {
  torch::manual_seed(seed);
  SteppedModel s{models::make_model("resnet20", 5), nullptr};
  s.optimizer = make_optimizer(momentum_sgd(), s.model->parameters());
  take_one_step(*s.model, *s.optimizer, seed + 1);
  return s;
}

TEST(Checkpoint, RoundTripRestoresWeightsAndOptimiser) {
  TempDir dir;
  auto [a, opt_a] = stepped_model(0);
  CheckpointInfo info;
  info.phase = "phase_i";
  info.epoch = 7;
  info.best_acc1 = 0.5;
  info.history = "[]";
  save_checkpoint(dir / "c.pt", *a, opt_a.get(), info);

  torch::manual_seed(99);
  auto b = models::make_model("resnet20", 5);
  auto opt_b = make_optimizer(momentum_sgd(), b->parameters());
  const auto read = load_checkpoint(dir / "c.pt", *b, opt_b.get());
  EXPECT_EQ(read.epoch, 7);
  EXPECT_EQ(read.best_acc1, 0.5);
  EXPECT_EQ(read.arch, "resnet20");
  for (const auto& p : a->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), b->named_parameters()[p.key()])) << p.key();
  }
  for (const auto& p : a->named_buffers()) {
    EXPECT_TRUE(torch::equal(p.value(), b->named_buffers()[p.key()])) << p.key();
  }
  // Same momentum buffers ⇒ the next step moves both models identically.
  take_one_step(*a, *opt_a, 2);
  take_one_step(*b, *opt_b, 2);
  for (const auto& p : a->named_parameters()) {
    EXPECT_TRUE(torch::allclose(p.value(), b->named_parameters()[p.key()], 0, 1e-7)) << p.key();
  }
}

TEST(Checkpoint, TruncatedMissingAndMismatchedAreClearErrors) {
  TempDir dir;
  auto m = models::make_model("resnet20", 5);
  CheckpointInfo info;
  info.phase = "phase_i";
  save_checkpoint(dir / "c.pt", *m, nullptr, info);
  auto bytes = fsa::testing::read_text(dir / "c.pt");
  fsa::testing::write_bytes(dir / "cut.pt",
                            std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  try {
    load_checkpoint(dir / "cut.pt", *m, nullptr);
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("cut.pt"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_checkpoint(dir / "none.pt", *m, nullptr), CheckpointError);
  auto other = models::make_model("resnet20", 6);
  EXPECT_THROW(load_checkpoint(dir / "c.pt", *other, nullptr), CheckpointError);
  // No temporary file is left beside the checkpoint.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += e.exists();
  EXPECT_EQ(files, 2);
}

TEST(Checkpoint, AutoPrecisionResumesWithWhatTheRunBeganWith) {
  TempDir dir;
  auto m = models::make_model("resnet20", 5);
  CheckpointInfo info;
  info.phase = "phase_i";
  info.config = "precision: fp32\nmemory_format: contiguous\n";
  save_checkpoint(dir / "c.pt", *m, nullptr, info);

  io::Config cfg;
  cfg.checkpoint.resume = dir / "c.pt";
  cfg.precision = "bf16-mixed";  // what auto picked on a CPU with native bfloat16
  cfg.memory_format = "channels_last";
  cfg.precision_auto = cfg.memory_format_auto = true;
  keep_resumed_precision(cfg);
  EXPECT_EQ(cfg.precision, "fp32");
  EXPECT_EQ(cfg.memory_format, "contiguous");

  // Values the user gave are kept (resuming then logs the difference).
  cfg.precision = "bf16-mixed";
  cfg.memory_format = "channels_last";
  cfg.precision_auto = false;
  keep_resumed_precision(cfg);
  EXPECT_EQ(cfg.precision, "bf16-mixed");
  EXPECT_EQ(cfg.memory_format, "contiguous");

  // A new run is left alone.
  io::Config fresh;
  fresh.precision = "bf16-mixed";
  fresh.precision_auto = true;
  keep_resumed_precision(fresh);
  EXPECT_EQ(fresh.precision, "bf16-mixed");
}

TEST(Checkpoint, FlippedBitInTheWeightsIsCaught) {
  TempDir dir;
  auto [m, opt] = stepped_model(2);
  CheckpointInfo info;
  info.phase = "phase_i";
  save_checkpoint(dir / "c.pt", *m, opt.get(), info);
  EXPECT_NO_THROW(load_checkpoint(dir / "c.pt", *m, opt.get()));

  // The classifier's weight is stored as its raw float32 bytes: find them in
  // the file and flip one bit of the first weight.
  auto bytes = fsa::testing::read_text(dir / "c.pt");
  const auto w = m->classifier()->weight.detach().contiguous();
  const auto* first = static_cast<const char*>(w.data_ptr());
  const auto at = bytes.find(std::string(first, first + w.nbytes()));
  ASSERT_NE(at, std::string::npos);
  bytes[at + 1] = static_cast<char>(bytes[at + 1] ^ 0x10);
  fsa::testing::write_bytes(dir / "flipped.pt", std::vector<uint8_t>(bytes.begin(), bytes.end()));
  auto fresh = models::make_model("resnet20", 5);
  try {
    load_checkpoint(dir / "flipped.pt", *fresh, nullptr);
    FAIL() << "a flipped bit loaded silently";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("flipped.pt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
  }
}

/// The pickled dict of a file, and a copy written back after `edit`.
c10::impl::GenericDict read_pickle(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  return torch::pickle_load(bytes).toGenericDict();
}

void write_pickle(const c10::impl::GenericDict& d, const std::string& path) {
  const auto out = torch::pickle_save(d);
  std::ofstream(path, std::ios::binary).write(out.data(), std::streamsize(out.size()));
}

TEST(Checkpoint, EveryEntryIsSealed) {
  TempDir dir;
  auto [m, opt] = stepped_model(3);
  CheckpointInfo info;
  info.phase = "phase_i";
  info.epoch = 7;
  info.best_acc1 = 0.5;
  info.best_epoch = 6;
  info.history = "[]";
  info.config = "random_seed: 1\n";
  info.fingerprint = {"CIFAR-10-LT", 100, 1, 12406, "00ff"};
  info.class_names = {"a", "b", "c", "d", "e"};
  save_checkpoint(dir / "c.pt", *m, opt.get(), info);
  const auto read = read_checkpoint_info(dir / "c.pt");
  EXPECT_EQ(read.fingerprint.sample_hash, "00ff");
  EXPECT_EQ(read.class_names, info.class_names);
  EXPECT_NE(read.checksum, 0);

  const std::vector<std::pair<std::string, c10::IValue>> edits{
      {"epoch", int64_t(6)},
      {"best_acc1", 0.9},
      {"best_epoch", int64_t(7)},
      {"history", std::string("[{}]")},
      {"config", std::string("random_seed: 2\n")},
      {"phase", std::string("phase_iii")}};
  for (const auto& [key, value] : edits) {
    auto d = read_pickle(dir / "c.pt");
    d.insert_or_assign(key, value);
    write_pickle(d, dir / "edited.pt");
    try {
      read_checkpoint_info(dir / "edited.pt");
      FAIL() << "an edited '" << key << "' was accepted";
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find("corrupt or was edited"), std::string::npos) << e.what();
    }
  }
  // Renaming or dropping the checksum does not turn the check off.
  auto d = read_pickle(dir / "c.pt");
  const auto sum = d.at("checksum");
  d.erase("checksum");
  d.insert("checksum_", sum);
  write_pickle(d, dir / "renamed.pt");
  try {
    load_checkpoint(dir / "renamed.pt", *m, nullptr);
    FAIL() << "a checkpoint without its checksum was accepted";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("has lost its checksum"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, FilesOfTheFirstFormatStillLoadAndAreChecked) {
  TempDir dir;
  auto [m, opt] = stepped_model(4);
  CheckpointInfo info;
  info.phase = "phase_i";
  info.epoch = 3;
  save_checkpoint(dir / "c.pt", *m, opt.get(), info);
  // Format 1: no `format`, and a checksum of the weights and optimiser bytes.
  auto d = read_pickle(dir / "c.pt");
  d.erase("format");
  d.erase("checksum");
  uint32_t crc = crc32_z(0, Z_NULL, 0);
  for (const auto& kv : d.at("state_dict").toGenericDict()) {
    const auto t = kv.value().toTensor().contiguous();
    crc = crc32_z(crc, static_cast<const Bytef*>(t.data_ptr()), t.nbytes());
  }
  const auto opt_bytes = d.at("optimizer").toTensor().contiguous();
  crc = crc32_z(crc, opt_bytes.data_ptr<uint8_t>(), opt_bytes.nbytes());
  d.insert("checksum", int64_t(crc));
  write_pickle(d, dir / "v1.pt");
  auto fresh = models::make_model("resnet20", 5);
  EXPECT_EQ(load_checkpoint(dir / "v1.pt", *fresh, nullptr).epoch, 3);
  d.insert_or_assign("checksum", int64_t(crc ^ 1));
  write_pickle(d, dir / "v1_bad.pt");
  EXPECT_THROW(load_checkpoint(dir / "v1_bad.pt", *fresh, nullptr), CheckpointError);
}

io::Config tiny_config(const std::string& root) {
  auto cfg = io::parse_config(YAML::Load(R"(
random_seed: 11
threads: 2
dataset: {name: ImageFolder-LT, kwargs: {im: 4}}
model: {name: resnet20}
train:
  batch_size: 16
  num_epoch: 3
  optimizer: {name: SGD, kwargs: {lr: 0.05, momentum: 0.9, weight_decay: 0.0005}}
  lr_scheduler: {name: warmup, kwargs: {warmup_epochs: 1, milestones: [2], gamma: 0.1}}
test: {batch_size: 32}
)"),
                              "tiny.yaml");
  cfg.dataset.root = root;
  return cfg;
}

/// The ResNet-20 (4 classes) weights of two checkpoints agree to float rounding.
void expect_same_weights(const std::string& path_a, const std::string& path_b) {
  auto a = models::make_model("resnet20", 4), b = models::make_model("resnet20", 4);
  load_checkpoint(path_a, *a, nullptr);
  load_checkpoint(path_b, *b, nullptr);
  for (const auto& p : a->named_parameters()) {
    EXPECT_TRUE(torch::allclose(p.value(), b->named_parameters()[p.key()], 1e-4, 1e-5)) << p.key();
  }
}

TEST(Checkpoint, ResumeContinuesAtTheRightEpochAndMatchesAnUninterruptedRun) {
  TempDir dir;
  fsa::testing::make_image_folder(dir / "data", {24, 16, 10, 6}, 4);
  auto cfg = tiny_config(dir / "data");
  auto ws = make_workspace(cfg);
  const auto full = run_phase_i(cfg, ws, dir / "full");

  auto first = cfg;
  first.train.num_epoch = 2;
  run_phase_i(first, ws, dir / "part");
  EXPECT_EQ(read_checkpoint_info(dir / "part/checkpoints/last.pt").epoch, 2);
  auto rest = cfg;
  rest.checkpoint.resume = dir / "part/checkpoints/last.pt";
  const auto resumed = run_phase_i(rest, ws, dir / "part");
  const auto info = read_checkpoint_info(dir / "part/checkpoints/last.pt");
  EXPECT_EQ(info.epoch, 3);
  ASSERT_EQ(resumed.metrics["history"].size(), 3u);
  EXPECT_EQ(resumed.metrics["history"][2]["epoch"], 3);

  expect_same_weights(full.checkpoint, resumed.checkpoint);
  EXPECT_NEAR(full.report.top1, resumed.report.top1, 1e-9);
}

/// tiny_config over a fresh image folder in `dir`, for Phase II and III
/// tests: one Phase I epoch, Na = Nf = 1, head classes 0 and 1.
io::Config phase_iii_config(const TempDir& dir) {
  fsa::testing::make_image_folder(dir / "data", {24, 16, 10, 6}, 4);
  auto cfg = tiny_config(dir / "data");
  cfg.train.num_epoch = 1;
  cfg.finetune.Na = 1;
  cfg.finetune.Nf = 1;
  cfg.finetune.head_ratio = 0.6;
  return cfg;
}

TEST(Checkpoint, PhaseIiiResumeMatchesAnUninterruptedRun) {
  TempDir dir;
  auto cfg = phase_iii_config(dir);
  auto ws = make_workspace(cfg);
  const auto p1 = run_phase_i(cfg, ws, dir / "p1");
  run_phase_ii(cfg, ws, p1.checkpoint, dir / "p2");
  const std::string analysis = dir / "p2/analysis.pt";

  auto ft = cfg;
  ft.train.batch_size = 8;
  ft.train.num_epoch = 3;
  const auto full = run_phase_iii(ft, ws, p1.checkpoint, analysis, dir / "full");
  auto first = ft;
  first.train.num_epoch = 2;
  run_phase_iii(first, ws, p1.checkpoint, analysis, dir / "part");
  auto rest = ft;
  rest.checkpoint.resume = dir / "part/checkpoints/last.pt";
  const auto resumed = run_phase_iii(rest, ws, p1.checkpoint, analysis, dir / "part");
  EXPECT_EQ(read_checkpoint_info(dir / "part/checkpoints/last.pt").epoch, 3);
  ASSERT_EQ(resumed.metrics["history"].size(), 3u);
  EXPECT_EQ(resumed.metrics["history"][2]["epoch"], 3);
  EXPECT_NEAR(resumed.metrics["history"][2]["train_loss"].get<double>(),
              full.metrics["history"][2]["train_loss"].get<double>(), 1e-5);

  expect_same_weights(full.checkpoint, resumed.checkpoint);
  EXPECT_NEAR(full.report.top1, resumed.report.top1, 1e-9);

  // A Phase I checkpoint is not a Phase III one to resume from, and nothing
  // is written when it is refused.
  auto wrong = ft;
  wrong.checkpoint.resume = p1.checkpoint;
  EXPECT_THROW(run_phase_iii(wrong, ws, p1.checkpoint, analysis, dir / "wrong"), CheckpointError);
  EXPECT_FALSE(std::filesystem::exists(dir / "wrong"));
  // A finished run resumed at the same num_epoch trains nothing and
  // completes its outputs (a kill before metrics.json leaves such a run).
  auto done = ft;
  done.checkpoint.resume = full.checkpoint;
  const auto completed = run_phase_iii(done, ws, p1.checkpoint, analysis, dir / "done");
  EXPECT_EQ(completed.metrics["history"].size(), 3u);
  EXPECT_DOUBLE_EQ(completed.report.top1, full.report.top1);
  EXPECT_TRUE(std::filesystem::exists(dir / "done/metrics.json"));
  EXPECT_FALSE(std::filesystem::exists(dir / "done/checkpoints"));  // nothing trained
  // Fewer epochs than the checkpoint has done is refused before any output.
  auto fewer = done;
  fewer.train.num_epoch = 2;
  EXPECT_THROW(run_phase_iii(fewer, ws, p1.checkpoint, analysis, dir / "fewer"), io::ConfigError);
  EXPECT_FALSE(std::filesystem::exists(dir / "fewer"));
  // The resumed head must sit on the f it was trained on.
  auto other_cfg = cfg;
  other_cfg.random_seed = 12;
  auto other_ws = make_workspace(other_cfg);
  const auto other_p1 = run_phase_i(other_cfg, other_ws, dir / "other_p1");
  auto mixed = ft;
  mixed.checkpoint.resume = dir / "part/checkpoints/last.pt";
  mixed.train.num_epoch = 4;
  try {
    run_phase_iii(mixed, ws, other_p1.checkpoint, analysis, dir / "mixed");
    FAIL() << "a head resumed on another Phase I network";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("another Phase I network"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, CorruptAnalysisIsRefusedBeforePhaseIii) {
  TempDir dir;
  auto cfg = phase_iii_config(dir);  // tail classes 2 and 3
  auto ws = make_workspace(cfg);
  const auto p1 = run_phase_i(cfg, ws, dir / "p1");
  run_phase_ii(cfg, ws, p1.checkpoint, dir / "p2");
  EXPECT_NO_THROW(load_matching_analysis(dir / "p2/analysis.pt", ws));
  try {  // and it is not a checkpoint
    read_checkpoint_info(dir / "p2/analysis.pt");
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("is a Phase II file"), std::string::npos) << e.what();
  }

  // Rewrites the first confusing class of tail class 3 and saves a copy.
  auto with_entry = [&](int64_t value, const std::string& name) {
    std::ifstream in(dir / "p2/analysis.pt", std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
    auto d = torch::pickle_load(bytes).toGenericDict();
    auto table = d.at("confusing").toTensor().clone();
    table[3][0] = value;
    d.insert_or_assign("confusing", table);
    if (name.rfind("sealed", 0) != 0) {  // as an older fsa wrote it: no seal to break
      d.erase("format");
      d.erase("checksum");
    }
    const auto out = torch::pickle_save(d);
    std::ofstream(dir / name, std::ios::binary).write(out.data(), std::streamsize(out.size()));
    return dir / name;
  };
  // An edited entry breaks the seal.
  try {
    load_matching_analysis(with_entry(99, "sealed.pt"), ws);
    FAIL() << "an edited analysis was accepted";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("sealed.pt' is corrupt or was edited"), std::string::npos)
        << e.what();
  }
  // Without a seal, the structure is checked.
  for (const auto& [value, says] : std::vector<std::pair<int64_t, std::string>>{
           {99, "confusing class 99 of class 3 is not another class"},
           {-5, "confusing class -5"},
           {3, "confusing class 3 of class 3"},
           {2, "class 2 is a tail class"}}) {
    const auto path = with_entry(value, "bad_" + std::to_string(value + 10) + ".pt");
    try {
      load_matching_analysis(path, ws);
      FAIL() << value << " was accepted";
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace fsa::train
