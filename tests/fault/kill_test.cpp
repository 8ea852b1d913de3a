// Kills at save points (issue 11, docs/RELIABILITY.md). The fsa binary runs
// under strace, which sends it SIGKILL at its N-th rename(2) or fsync(2): the
// moments io::write_file_atomic flushes a temporary file, commits it under
// its name (a checkpoint, metrics.json, a report file, the config) and
// flushes the folder. After each kill, every named checkpoint left must load, and
// the run continued with --resume (or started again with --overwrite when
// no checkpoint was left) must end with the uninterrupted run's weights and
// per-epoch figures, bit for bit. Checkpoints are written every step
// (checkpoint.save_step_interval: 1), so kills land within epochs too.
//
// CI kills at three renames of each run; FSA_FAULT_KILLS=all kills at every
// rename and every fsync (the figures in docs/RELIABILITY.md).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "fsa/models/backbone.h"
#include "fsa/train/checkpoint.h"
#include "test_util.h"

namespace {

using fsa::testing::read_text;
using fsa::testing::TempDir;
namespace fs = std::filesystem;

const char* kRecipe = R"(random_seed: 3
threads: 2
DATASET
model: {name: resnet20}
finetune: {Na: 1, Nf: 1, head_ratio: 0.6}
test: {batch_size: 64}
log: {progress: quiet}
checkpoint: {save_step_interval: 1}
phase_i:
  train:
    num_epoch: 2
    batch_size: 16
    optimizer: {name: SGD, kwargs: {lr: 0.05, momentum: 0.9}}
    lr_scheduler: {name: constant}
phase_iii:
  train:
    num_epoch: 2
    batch_size: 8
    optimizer: {name: SGD, kwargs: {lr: 0.01, momentum: 0.9}}
    lr_scheduler: {name: constant}
decouple:
  decoupling: {method: crt}
  train:
    num_epoch: 2
    batch_size: 8
    sampler: class_balanced
    optimizer: {name: SGD, kwargs: {lr: 0.01, momentum: 0.9}}
    lr_scheduler: {name: constant}
)";

/// In memory (the images decoded at the start) or read from files by
/// loader threads with a class-balanced sampler (its own draws).
const char* kImageFolder = "dataset: {name: ImageFolder-LT, root: ROOT, kwargs: {im: 5}}";
const char* kListFile = R"(dataset:
  name: ListFile-LT
  root: ROOT
  train_list: train.txt
  test_list: test.txt
  num_workers: 2
  transform: {crop_size: 32, resize_size: 32}
train: {sampler: class_balanced})";

/// `root`/<split>.txt listing root/<split>/class_<c>/* as "path c".
void write_list(const std::string& root, const std::string& split) {
  std::vector<std::string> lines;
  for (const auto& cls : fs::directory_iterator(root + "/" + split)) {
    const auto folder = cls.path().filename().string();
    for (const auto& f : fs::directory_iterator(cls.path())) {
      lines.push_back(split + "/" + folder + "/" + f.path().filename().string() + " " +
                      folder.substr(folder.find('_') + 1));
    }
  }
  std::sort(lines.begin(), lines.end());
  std::ofstream out(root + "/" + split + ".txt");
  for (const auto& l : lines) out << l << "\n";
}

bool have_strace() { return std::system("strace -V > /dev/null 2>&1") == 0; }

/// What a kill sweep found.
struct Sweep {
  int save_points = 0;  ///< renames and fsyncs of the uninterrupted run
  int kills = 0;        ///< runs killed at a save point
  int resumed = 0;      ///< of which continued with --resume
  int restarted = 0;    ///< of which started again (no checkpoint left)
};

class Kills : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const auto data = *dir_ / "data";
    fsa::testing::make_image_folder(data, {30, 18, 10, 6}, 5);
    write_list(data, "train");
    write_list(data, "test");
    for (const auto& [name, dataset] :
         {std::pair{"recipe.yaml", kImageFolder}, std::pair{"list_recipe.yaml", kListFile}}) {
      std::string cfg = kRecipe;
      cfg.replace(cfg.find("DATASET"), 7, dataset);
      cfg.replace(cfg.find("ROOT"), 4, data);
      std::ofstream(*dir_ / name) << cfg;
    }
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string path(const std::string& name) { return *dir_ / name; }

  /// Runs `fsa args` (under `prefix`, e.g. strace); returns the exit status.
  static int fsa(const std::string& args, const std::string& prefix = "") {
    return fsa::testing::run_command(prefix + FSA_BINARY + " " + args, path("cmd.log"));
  }

  /// The save points of `fsa args`: its calls of `syscall`, counted by strace.
  static int count_calls(const std::string& args, const std::string& syscall) {
    const auto trace = path("calls.txt");
    EXPECT_EQ(fsa(args, "strace -f -qq -e trace=" + syscall + " -o " + trace + " "), 0)
        << read_text(path("cmd.log"));
    std::ifstream in(trace);
    int n = 0;
    for (std::string line; std::getline(in, line);) {
      n += line.find(syscall + "(") != std::string::npos;
    }
    return n;
  }

  /// FSA_FAULT_KILLS=all: every save point of both kinds. Otherwise (CI)
  /// the first, middle and last rename.
  static bool every_save_point() {
    const char* all = std::getenv("FSA_FAULT_KILLS");
    return all && std::string(all) == "all";
  }

  static std::vector<int> chosen(int save_points) {
    if (!every_save_point()) return {1, (save_points + 1) / 2, save_points};
    std::vector<int> at;
    for (int n = 1; n <= save_points; ++n) at.push_back(n);
    return at;
  }

  /// Every checkpoint a killed run left loads, and best.pt is not ahead of last.pt.
  static void expect_loadable(const std::string& out, const std::string& kill) {
    const auto last = out + "/checkpoints/last.pt", best = out + "/checkpoints/best.pt";
    std::optional<fsa::train::CheckpointInfo> l, b;
    if (fs::exists(last)) {
      EXPECT_NO_THROW(l = fsa::train::read_checkpoint_info(last)) << "kill " << kill;
    }
    if (fs::exists(best)) {
      EXPECT_NO_THROW(b = fsa::train::read_checkpoint_info(best)) << "kill " << kill;
    }
    if (l && b) EXPECT_LE(b->epoch, l->epoch + (l->step > 0)) << "kill " << kill;
    if (fs::exists(out + "/metrics.json")) {
      EXPECT_NO_THROW(nlohmann::json::parse(read_text(out + "/metrics.json"))) << "kill " << kill;
    }
  }

  /// The same weights (parameters and batch-norm statistics) bit for bit.
  static void expect_same_network(const std::string& a, const std::string& b,
                                  const std::string& kill) {
    auto x = fsa::models::make_model("resnet20", 4), y = fsa::models::make_model("resnet20", 4);
    fsa::train::load_checkpoint(a, *x, nullptr);
    fsa::train::load_checkpoint(b, *y, nullptr);
    for (const auto& p : x->named_parameters()) {
      EXPECT_TRUE(torch::equal(p.value(), y->named_parameters()[p.key()]))
          << "kill " << kill << ": " << p.key();
    }
    for (const auto& p : x->named_buffers()) {
      EXPECT_TRUE(torch::equal(p.value(), y->named_buffers()[p.key()]))
          << "kill " << kill << ": " << p.key();
    }
  }

  /// The per-epoch figures of two metrics.json files, exactly (not the times).
  static void expect_same_history(const std::string& a, const std::string& b,
                                  const std::string& phase, const std::string& kill) {
    const auto x = nlohmann::json::parse(read_text(a))[phase]["history"];
    const auto y = nlohmann::json::parse(read_text(b))[phase]["history"];
    ASSERT_GT(x.size(), 0u) << a << " has no " << phase << ".history";
    ASSERT_EQ(x.size(), y.size()) << "kill " << kill;
    for (size_t e = 0; e < x.size(); ++e) {
      for (const char* key : {"train_loss", "train_acc", "test_loss", "test_acc"}) {
        EXPECT_EQ(x[e][key], y[e][key]) << "kill " << kill << ", epoch " << e + 1 << ", " << key;
      }
    }
  }

  /// Kills `command args --out K` at each chosen save point (renames and
  /// fsyncs), continues it, and compares the end with the uninterrupted run
  /// in `reference`.
  static Sweep sweep(const std::string& command, const std::string& args,
                     const std::string& reference, const std::string& phase) {
    Sweep s;
    const auto full = command + " " + args;
    EXPECT_EQ(fsa(full + " --out " + path(reference)), 0) << read_text(path("cmd.log"));
    for (const std::string syscall : {"rename", "fsync"}) {
      if (syscall == "fsync" && !every_save_point()) break;
      const int calls = count_calls(full + " --out " + path(reference + "_counted"), syscall);
      fs::remove_all(path(reference + "_counted"));
      EXPECT_GT(calls, 10) << syscall;
      s.save_points += calls;
      for (const int n : chosen(calls)) {
        const auto kill = fmt::format("{} {}", syscall, n);
        const auto out = path(fmt::format("{}_kill_{}_{}", reference, syscall, n));
        const auto rc =
            fsa(full + " --out " + out, fmt::format("strace -f -qq -o /dev/null -e trace={} "
                                                    "-e inject={}:signal=KILL:when={} ",
                                                    syscall, syscall, n));
        EXPECT_EQ(rc, 128 + 9) << "kill " << kill << ": " << read_text(path("cmd.log"));
        ++s.kills;
        expect_loadable(out, kill);
        const auto last = out + "/checkpoints/last.pt";
        const bool resume = fs::exists(last);
        const auto again = full + " --out " + out + (resume ? " --resume " + last : " --overwrite");
        EXPECT_EQ(fsa(again), 0) << "kill " << kill << ": " << read_text(path("cmd.log"));
        ++(resume ? s.resumed : s.restarted);
        expect_same_network(path(reference + "/checkpoints/last.pt"), last, kill);
        expect_same_history(path(reference + "/metrics.json"), out + "/metrics.json", phase, kill);
        if (::testing::Test::HasFailure()) return s;  // one kill's story is enough to read
        fs::remove_all(out);
      }
    }
    std::cout << fmt::format("{} ({}): {} save points, {} kills, {} resumed, {} started again\n",
                             command, reference, s.save_points, s.kills, s.resumed, s.restarted);
    return s;
  }

  /// Phase I and Phase II once per process (--store: with the offline
  /// feature store); returns Phase III's " --checkpoint P1 --analysis P2" arguments.
  static std::string phase_i_and_ii(bool store) {
    if (!fs::exists(path("p1/checkpoints/last.pt"))) {
      EXPECT_EQ(fsa("train --config " + path("recipe.yaml") + " --out " + path("p1")), 0)
          << read_text(path("cmd.log"));
    }
    const auto p2 = path(store ? "p2_store" : "p2");
    if (!fs::exists(p2 + "/analysis.pt")) {
      EXPECT_EQ(fsa("extract --config " + path("recipe.yaml") + (store ? " --store" : "") +
                    " --checkpoint " + path("p1/checkpoints/last.pt") + " --out " + p2),
                0)
          << read_text(path("cmd.log"));
    }
    return " --checkpoint " + path("p1/checkpoints/last.pt") + " --analysis " + p2 +
           "/analysis.pt";
  }

  static TempDir* dir_;
};

TempDir* Kills::dir_ = nullptr;

TEST_F(Kills, PhaseIResumesBitForBitAfterAKillAtAnySavePoint) {
  if (!have_strace()) GTEST_SKIP() << "strace is not installed (scripts/setup.sh installs it)";
  const auto s = sweep("train", "--config " + path("recipe.yaml"), "phase_i", "phase_i");
  EXPECT_GT(s.resumed, 0);
  EXPECT_GT(s.restarted, 0);  // the first save point is the config, before any checkpoint
}

TEST_F(Kills, PhaseIOnFilesWithLoaderThreadsResumesBitForBit) {
  if (!have_strace()) GTEST_SKIP() << "strace is not installed (scripts/setup.sh installs it)";
  const auto s = sweep("train", "--config " + path("list_recipe.yaml"), "list_phase_i", "phase_i");
  EXPECT_GT(s.resumed, 0);
}

TEST_F(Kills, PhaseIiiResumesBitForBitAfterAKillAtAnySavePoint) {
  if (!have_strace()) GTEST_SKIP() << "strace is not installed (scripts/setup.sh installs it)";
  const auto s = sweep("finetune", "--config " + path("recipe.yaml") + phase_i_and_ii(false),
                       "phase_iii", "phase_iii");
  EXPECT_GT(s.resumed, 0);
}

TEST_F(Kills, PhaseIiiOfflineResumesBitForBit) {
  if (!have_strace()) GTEST_SKIP() << "strace is not installed (scripts/setup.sh installs it)";
  const auto s = sweep("finetune --offline",
                       "--config " + path("recipe.yaml") + phase_i_and_ii(true),
                       "phase_iii_offline", "phase_iii");
  EXPECT_GT(s.resumed, 0);
}

TEST_F(Kills, CrtResumesBitForBit) {
  if (!have_strace()) GTEST_SKIP() << "strace is not installed (scripts/setup.sh installs it)";
  phase_i_and_ii(false);
  const auto s = sweep("decouple",
                       "--config " + path("recipe.yaml") + " --method crt --checkpoint " +
                           path("p1/checkpoints/last.pt"),
                       "crt", "decouple");
  EXPECT_GT(s.resumed, 0);
}

}  // namespace
