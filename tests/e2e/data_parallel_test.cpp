// Data-parallel runs of the real program: two ranks on 127.0.0.1 started as
// torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), and by
// torchrun itself.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "fsa/dist/dist.h"
#include "fsa/io/torch_file.h"
#include "fsa/models/backbone.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/phases.h"
#include "test_util.h"

namespace {

using fsa::testing::read_text;
using fsa::testing::TempDir;
namespace fs = std::filesystem;

// Four classes of 30, 18, 10, 6 training images (64: four batches of 16,
// 8 per rank) and 5 test images each.
const char* kConfig = R"(random_seed: 3
threads: 1
precision: fp32
dataset: {name: ImageFolder-LT, root: ROOT, kwargs: {im: 5}}
model: {name: resnet20}
finetune: {Na: 1, Nf: 1, head_ratio: 0.6}
test: {batch_size: 8}
log: {progress: quiet}
dist: {timeout: 60}
phase_i:
  train:
    num_epoch: 2
    batch_size: 16
    optimizer: {name: SGD, kwargs: {lr: 0.05, momentum: 0.9}}
    lr_scheduler: {name: constant}
phase_iii:
  train:
    num_epoch: 1
    batch_size: 8
    optimizer: {name: SGD, kwargs: {lr: 0.01, momentum: 0.9}}
    lr_scheduler: {name: constant}
)";

class DataParallel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    fsa::testing::make_image_folder(*dir_ / "data", {30, 18, 10, 6}, 5);
    std::string cfg = kConfig;
    cfg.replace(cfg.find("ROOT"), 4, *dir_ / "data");
    std::ofstream(*dir_ / "config.yaml") << cfg;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string path(const std::string& name) { return *dir_ / name; }

  /// `fsa args` on two ranks at once (rank 1 with `rank1_extra` appended);
  /// returns both exit codes, rank 0's first.
  static std::pair<int, int> two_ranks(const std::string& args, const std::string& name,
                                       const std::string& rank1_extra = "") {
    const int port = fsa::dist::free_loopback_port();
    auto rank = [&](int r) {
      const auto env = fmt::format(
          "RANK={} WORLD_SIZE=2 LOCAL_RANK={} LOCAL_WORLD_SIZE=2 "
          "MASTER_ADDR=127.0.0.1 MASTER_PORT={} ",
          r, r, port);
      return fsa::testing::run_command(env + FSA_BINARY + " " + args + (r == 1 ? rank1_extra : ""),
                                       path(fmt::format("{}.rank{}.log", name, r)));
    };
    int rc1 = -1;
    std::thread other([&] { rc1 = rank(1); });
    const int rc0 = rank(0);
    other.join();
    return {rc0, rc1};
  }
  static std::string logs(const std::string& name) {
    return read_text(path(name + ".rank0.log")) + "\n--- rank 1 ---\n" +
           read_text(path(name + ".rank1.log"));
  }

  static TempDir* dir_;
};
TempDir* DataParallel::dir_ = nullptr;

TEST_F(DataParallel, TwoRanksTrainAndRankZeroAloneWritesTheRun) {
  if (!fsa::dist::available()) GTEST_SKIP() << "built without c10d and Gloo (libgloo-dev)";
  const auto [rc0, rc1] =
      two_ranks("train --config " + path("config.yaml") + " --out " + path("dp"), "train");
  ASSERT_EQ(rc0, 0) << logs("train");
  ASSERT_EQ(rc1, 0) << logs("train");
  const auto out0 = read_text(path("train.rank0.log"));
  EXPECT_NE(out0.find("data-parallel: 2 processes (torchrun, 2 on this machine)"),
            std::string::npos)
      << out0;
  EXPECT_NE(out0.find("16 is the global batch (8 or 8 per process)"), std::string::npos) << out0;
  // Rank 1 logs warnings only; rank 0 writes the run's files.
  EXPECT_EQ(read_text(path("train.rank1.log")).find("phase_i epoch"), std::string::npos);
  EXPECT_TRUE(fs::exists(path("dp/checkpoints/last.pt")));
  EXPECT_TRUE(fs::exists(path("dp/log.rank1.txt")));
  int events = 0;
  for (const auto& f : fs::directory_iterator(path("dp"))) {
    events += f.path().filename().string().rfind("events.out.tfevents", 0) == 0;
  }
  EXPECT_EQ(events, 1);
  const auto m = nlohmann::json::parse(read_text(path("dp/metrics.json")))["phase_i"];
  ASSERT_EQ(m["history"].size(), 2u);
  EXPECT_GT(m["history"][1]["train_acc"].get<double>(), 0.0);

  // Evaluation on two ranks counts exactly what one process counts.
  const auto test_args =
      "test --config " + path("config.yaml") + " --checkpoint " + path("dp/checkpoints/last.pt");
  const auto [t0, t1] = two_ranks(test_args + " --out " + path("test2"), "test");
  ASSERT_EQ(t0, 0) << logs("test");
  ASSERT_EQ(t1, 0) << logs("test");
  std::string out;
  ASSERT_EQ(fsa::testing::run_fsa(*dir_, test_args + " --out " + path("test1"), &out), 0) << out;
  const auto two = nlohmann::json::parse(read_text(path("test2/metrics.json")))["test"];
  const auto one = nlohmann::json::parse(read_text(path("test1/metrics.json")))["test"];
  EXPECT_EQ(two["confusion"], one["confusion"]);
  EXPECT_EQ(two["top1"], one["top1"]);
  // The loss sums float32 batch sums, grouped otherwise on two ranks.
  EXPECT_NEAR(two["loss"].get<double>(), one["loss"].get<double>(),
              1e-6 * one["loss"].get<double>());
}

TEST_F(DataParallel, WithSyncBatchNormTwoRanksTakeTheStepsOfOneProcess) {
  if (!fsa::dist::available()) GTEST_SKIP() << "built without c10d and Gloo (libgloo-dev)";
  // Two global batches of 32 and 31 images (16 and 16, then 16 and 15 per
  // rank): with the batch statistics of the whole batch, the ranks' steps
  // are one process's. (Over more steps the float32 rounding of either run
  // grows on this tiny noisy set as fast as between one process on one or
  // two threads, so a few steps are what can be compared to 1e-5.)
  const auto args = "train --config " + path("config.yaml") +
                    " --set dist.sync_batchnorm=true --set phase_i.train.batch_size=32 "
                    "--set phase_i.train.num_epoch=1";
  const auto [rc0, rc1] = two_ranks(args + " --out " + path("sync2"), "sync");
  ASSERT_EQ(rc0, 0) << logs("sync");
  ASSERT_EQ(rc1, 0) << logs("sync");
  EXPECT_NE(read_text(path("sync.rank0.log"))
                .find("19 BatchNorm layers normalise by the "
                      "statistics of the global batch"),
            std::string::npos)
      << logs("sync");
  std::string out;
  ASSERT_EQ(fsa::testing::run_fsa(*dir_, args + " --out " + path("sync1"), &out), 0) << out;
  auto two = fsa::models::make_model("resnet20", 4), one = fsa::models::make_model("resnet20", 4);
  fsa::train::load_checkpoint(path("sync2/checkpoints/last.pt"), *two, nullptr);
  fsa::train::load_checkpoint(path("sync1/checkpoints/last.pt"), *one, nullptr);
  auto close = [](const torch::Tensor& a, const torch::Tensor& b, const std::string& name) {
    EXPECT_TRUE(torch::allclose(a.to(torch::kDouble), b.to(torch::kDouble), 1e-5, 1e-5))
        << name << ": " << (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
  };
  for (const auto& p : one->named_parameters())
    close(two->named_parameters()[p.key()], p.value(), p.key());
  for (const auto& b : one->named_buffers())
    close(two->named_buffers()[b.key()], b.value(), b.key());

  // Each rank's own statistics (the default) are another network.
  const auto [u0, u1] =
      two_ranks(args + " --set dist.sync_batchnorm=false --out " + path("unsync2"), "unsync");
  ASSERT_EQ(u0, 0) << logs("unsync");
  ASSERT_EQ(u1, 0) << logs("unsync");
  auto unsynced = fsa::models::make_model("resnet20", 4);
  fsa::train::load_checkpoint(path("unsync2/checkpoints/last.pt"), *unsynced, nullptr);
  const auto key = "layer1.0.bn1.running_var";
  EXPECT_GT((unsynced->named_buffers()[key] - one->named_buffers()[key]).abs().max().item<double>(),
            1e-3);
}

TEST_F(DataParallel, PhaseIIOnTwoRanksEqualsOneProcess) {
  if (!fsa::dist::available()) GTEST_SKIP() << "built without c10d and Gloo (libgloo-dev)";
  std::string out;
  ASSERT_EQ(fsa::testing::run_fsa(
                *dir_, "train --config " + path("config.yaml") + " --out " + path("p1"), &out),
            0)
      << out;
  // All classes may be confusing (four classes, one head class otherwise).
  const auto args = "extract --config " + path("config.yaml") + " --checkpoint " +
                    path("p1/checkpoints/best.pt") +
                    " --store --set feature.score_matrix=true --set finetune.confusing_from=all";
  const auto [rc0, rc1] = two_ranks(args + " --out " + path("ii2"), "extract");
  ASSERT_EQ(rc0, 0) << logs("extract");
  ASSERT_EQ(rc1, 0) << logs("extract");
  ASSERT_EQ(fsa::testing::run_fsa(*dir_, args + " --out " + path("ii1"), &out), 0) << out;
  const auto two = fsa::train::load_analysis(path("ii2/analysis.pt"));
  const auto one = fsa::train::load_analysis(path("ii1/analysis.pt"));
  ASSERT_TRUE(one.score_matrix.defined());
  EXPECT_EQ(one.score_matrix.sizes(), (std::vector<int64_t>{4, 4}));
  EXPECT_TRUE(torch::allclose(two.score_matrix, one.score_matrix, 1e-6, 1e-7));
  EXPECT_TRUE(torch::equal(two.confusing, one.confusing)) << two.confusing << one.confusing;
  EXPECT_TRUE(torch::allclose(two.confusing_scores, one.confusing_scores, 1e-6, 1e-7));
  // The ranking is the score matrix's, sorted column by column.
  EXPECT_TRUE(torch::equal(one.confusing,
                           fsa::train::rank_confusing(one.score_matrix, {}, /*head_only=*/false)));
  EXPECT_EQ(read_text(path("ii2/confusing_classes.txt")),
            read_text(path("ii1/confusing_classes.txt")));
  // The offline store: every training image once, in the set's order.
  const auto f2 = fsa::io::read_torch_file(path("ii2/features.pt")).toGenericDict();
  const auto f1 = fsa::io::read_torch_file(path("ii1/features.pt")).toGenericDict();
  EXPECT_TRUE(torch::equal(f2.at("labels").toTensor(), f1.at("labels").toTensor()));
  EXPECT_EQ(f1.at("features").toTensor().size(0), 63);  // im: 5 keeps 63 of the 64
  EXPECT_TRUE(torch::allclose(f2.at("features").toTensor().to(torch::kFloat),
                              f1.at("features").toTensor().to(torch::kFloat), 1e-3, 1e-3));
  EXPECT_TRUE(torch::allclose(f2.at("cams").toTensor(), f1.at("cams").toTensor(), 1e-4, 1e-5));
}

TEST_F(DataParallel, PhaseIIIOnTwoRanksEqualsOneProcess) {
  if (!fsa::dist::available()) GTEST_SKIP() << "built without c10d and Gloo (libgloo-dev)";
  const auto cfg = " --config " + path("config.yaml");
  std::string out;
  ASSERT_EQ(fsa::testing::run_fsa(*dir_, "train" + cfg + " --out " + path("p1"), &out), 0) << out;
  const auto p1 = path("p1/checkpoints/best.pt");
  ASSERT_EQ(fsa::testing::run_fsa(
                *dir_, "extract" + cfg + " --checkpoint " + p1 + " --out " + path("p2"), &out),
            0)
      << out;
  // Batches of 3 groups of 2(1 + Na) = 4 maps: ranks take 2 and 1 groups,
  // built with the draws of the whole batch, and their head gradients are
  // weighted by their groups: one process's steps.
  const auto args = "finetune" + cfg + " --checkpoint " + p1 + " --analysis " +
                    path("p2/analysis.pt") + " --set phase_iii.train.batch_size=12";
  const auto [rc0, rc1] = two_ranks(args + " --out " + path("p3_2"), "finetune");
  ASSERT_EQ(rc0, 0) << logs("finetune");
  ASSERT_EQ(rc1, 0) << logs("finetune");
  ASSERT_EQ(fsa::testing::run_fsa(*dir_, args + " --out " + path("p3_1"), &out), 0) << out;
  auto two = fsa::models::make_model("resnet20", 4), one = fsa::models::make_model("resnet20", 4);
  fsa::train::load_checkpoint(path("p3_2/checkpoints/last.pt"), *two, nullptr);
  fsa::train::load_checkpoint(path("p3_1/checkpoints/last.pt"), *one, nullptr);
  for (const auto& p : one->named_parameters()) {
    const auto q = two->named_parameters()[p.key()];  // a copy: the dict is a temporary
    EXPECT_TRUE(torch::allclose(q, p.value(), 1e-5, 1e-6))
        << p.key() << ": " << (q - p.value()).abs().max().item<double>();
  }
  const auto m2 = nlohmann::json::parse(read_text(path("p3_2/metrics.json")))["phase_iii"];
  const auto m1 = nlohmann::json::parse(read_text(path("p3_1/metrics.json")))["phase_iii"];
  EXPECT_NEAR(m2["history"][0]["train_loss"].get<double>(),
              m1["history"][0]["train_loss"].get<double>(), 1e-5);
  EXPECT_EQ(m2["history"][0]["train_acc"], m1["history"][0]["train_acc"]);
}

TEST_F(DataParallel, RanksStartedWithDifferentConfigsAreRefused) {
  if (!fsa::dist::available()) GTEST_SKIP() << "built without c10d and Gloo (libgloo-dev)";
  const auto [rc0, rc1] =
      two_ranks("train --config " + path("config.yaml") + " --out " + path("mixed"), "mixed",
                " --set random_seed=4");
  EXPECT_EQ(rc0, 2) << logs("mixed");
  EXPECT_EQ(rc1, 2) << logs("mixed");
  EXPECT_NE(read_text(path("mixed.rank0.log")).find("rank 1 of 2 was started with another config"),
            std::string::npos)
      << logs("mixed");
  EXPECT_FALSE(fs::exists(path("mixed/checkpoints")));
  // A global batch too small to give each rank 2 images is a config error.
  const auto [b0, b1] = two_ranks("train --config " + path("config.yaml") +
                                      " --set phase_i.train.batch_size=3 --out " + path("small"),
                                  "small");
  EXPECT_EQ(b0, 2) << logs("small");
  EXPECT_EQ(b1, 2) << logs("small");
  EXPECT_NE(read_text(path("small.rank0.log")).find("'train.batch_size': 3 is the global batch"),
            std::string::npos)
      << logs("small");
}

TEST_F(DataParallel, ARankThatDiesEndsTheOtherWithANamedError) {
  if (!fsa::dist::available()) GTEST_SKIP() << "built without c10d and Gloo (libgloo-dev)";
  // Rank 1 is killed once training is under way; rank 0 must stop, naming
  // the collective, within dist.timeout (5 s), and leave no partial checkpoint.
  const int port = fsa::dist::free_loopback_port();
  const auto env = fmt::format("WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={} ", port);
  const auto args = std::string(FSA_BINARY) + " train --config " + path("config.yaml") +
                    " --set dist.timeout=5 --set phase_i.train.num_epoch=100 --out " +
                    path("killed");
  const auto script = fmt::format(
      "RANK=1 {0}{1} > {2}/killed.rank1.log 2>&1 & r1=$!; "
      "RANK=0 {0}{1} > {2}/killed.rank0.log 2>&1 & r0=$!; "
      "for i in $(seq 600); do grep -q 'phase_i: loss' {2}/killed/log.txt 2>/dev/null && break; "
      "sleep 0.1; done; sleep 1; kill -9 $r1; start=$(date +%s); wait $r0; rc=$?; "
      "echo \"rank 0 exit $rc after $(( $(date +%s) - start )) s\"",
      env, args, dir_->path());
  std::ofstream(path("kill.sh")) << script;
  std::string out;
  fsa::testing::run_command("bash " + path("kill.sh"), path("kill.log"));
  out = read_text(path("kill.log"));
  const auto rank0 = read_text(path("killed.rank0.log"));
  EXPECT_EQ(out.find("rank 0 exit 0 "), std::string::npos) << out << rank0;
  EXPECT_NE(out.find("rank 0 exit 5"), std::string::npos) << out << rank0;
  EXPECT_NE(rank0.find("rank 0 of 2"), std::string::npos) << rank0;
  for (const auto& f : fs::recursive_directory_iterator(path("killed"))) {
    EXPECT_EQ(f.path().string().find(".tmp."), std::string::npos) << f.path();
  }
}

TEST_F(DataParallel, TorchrunRunsThePipeline) {
  if (!fsa::dist::available()) GTEST_SKIP() << "built without c10d and Gloo (libgloo-dev)";
  if (!fs::exists("/usr/bin/torchrun")) {
    GTEST_SKIP() << "torchrun is not installed (Debian's python3-torch; scripts/setup.sh)";
  }
  // Debian 12's torchrun (PyTorch 1.13) fails under Python 3.11 before it
  // starts anything; scripts/torchrun.py is torchrun with that mended.
  const auto cmd = fmt::format(
      "/usr/bin/python3 {}/scripts/torchrun.py --nproc_per_node=2 --master_port={} --no_python "
      "{} run --config {} --out {}",
      FSA_SOURCE_DIR, fsa::dist::free_loopback_port(), FSA_BINARY, path("config.yaml"),
      path("torchrun"));
  EXPECT_EQ(fsa::testing::run_command(cmd, path("torchrun.log")), 0)
      << read_text(path("torchrun.log"));
  const auto m = nlohmann::json::parse(read_text(path("torchrun/metrics.json")));
  EXPECT_EQ(m["phase_i"]["history"].size(), 2u);
  EXPECT_EQ(m["phase_iii"]["history"].size(), 1u);
  EXPECT_TRUE(fs::exists(path("torchrun/phase_ii/analysis.pt")));
}

TEST_F(DataParallel, CommandsThatRunInOneProcessSaySo) {
  std::string out;
  const int rc = fsa::testing::run_command(
      "RANK=0 WORLD_SIZE=2 " + std::string(FSA_BINARY) + " info --model resnet20",
      path("info.log"));
  out = read_text(path("info.log"));
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("fsa info runs in one process"), std::string::npos) << out;
}

}  // namespace
