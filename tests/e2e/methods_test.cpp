// One tiny end-to-end run per long-tail method through the fsa binary: each
// Phase I loss and sampler, post-hoc logit adjustment, and the decoupled
// classifiers (cRT, LWS, τ-norm) on a frozen Phase I network.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fsa/models/backbone.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/decouple.h"
#include "test_util.h"

namespace {

using fsa::testing::read_text;
using fsa::testing::TempDir;
namespace fs = std::filesystem;

const char* kRecipe = R"(random_seed: 5
threads: 2
dataset: {name: ImageFolder-LT, root: ROOT, kwargs: {im: 5}}
model: {name: resnet20}
finetune: {Na: 1, Nf: 1, head_ratio: 0.6}
test: {batch_size: 64}
log: {progress: quiet}
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
decouple:
  train:
    num_epoch: 2
    batch_size: 16
    sampler: class_balanced
    optimizer: {name: SGD, kwargs: {lr: 0.05, momentum: 0.9, weight_decay: 0.0005}}
    lr_scheduler: {name: CosineAnnealingLR}
)";

class Methods : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    fsa::testing::make_image_folder(*dir_ / "data", {30, 18, 10, 6}, 5);
    std::string cfg = kRecipe;
    cfg.replace(cfg.find("ROOT"), 4, *dir_ / "data");
    std::ofstream(*dir_ / "recipe.yaml") << cfg;
    std::string out;
    ASSERT_EQ(fsa::testing::run_fsa(
                  *dir_, "train --config " + path("recipe.yaml") + " --out " + path("ce"), &out),
              0)
        << out;
  }
  static void TearDownTestSuite() { delete dir_; }

  static int fsa(const std::string& args, std::string* output = nullptr) {
    return fsa::testing::run_fsa(*dir_, args, output);
  }
  static std::string path(const std::string& name) { return *dir_ / name; }
  static std::string phase_i() { return path("ce/checkpoints/last.pt"); }

  /// The state dict of a checkpoint, through a fresh resnet20 of 4 classes.
  static std::shared_ptr<fsa::models::Backbone> load(const std::string& ckpt, bool cosine = false) {
    auto m = fsa::models::make_model("resnet20", 4);
    if (cosine) m->use_cosine_classifier();
    fsa::train::load_checkpoint(ckpt, *m, nullptr);
    return m;
  }

  /// `fsa decouple --method M` on the Phase I network into folder `name`.
  static void decouple(const std::string& method, const std::string& name,
                       const std::string& extra = "") {
    std::string out;
    ASSERT_EQ(fsa("decouple --config " + path("recipe.yaml") + " --checkpoint " + phase_i() +
                      " --method " + method + " " + extra + " --out " + path(name),
                  &out),
              0)
        << out;
  }

  /// `fsa test` of name/checkpoints/last.pt gives the top-1 that the run
  /// recorded under `key` in its metrics.json.
  static void expect_test_reproduces(const std::string& name, const std::string& key) {
    std::string out;
    ASSERT_EQ(fsa("test --config " + path("recipe.yaml") + " --checkpoint " +
                      path(name + "/checkpoints/last.pt") + " --out " + path(name + "_t"),
                  &out),
              0)
        << out;
    const auto recorded = nlohmann::json::parse(read_text(path(name + "/metrics.json")));
    const auto tested = nlohmann::json::parse(read_text(path(name + "_t/metrics.json")));
    EXPECT_DOUBLE_EQ(tested["test"]["top1"].get<double>(), recorded[key]["top1"].get<double>())
        << name;
  }

  static TempDir* dir_;
};
TempDir* Methods::dir_ = nullptr;

double top1_of(const std::string& metrics, const std::string& key) {
  return nlohmann::json::parse(read_text(metrics))[key]["top1"].get<double>();
}

TEST_F(Methods, EveryLossAndSamplerTrainsAndTestReproducesIt) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> runs{
      {"focal", {"phase_i.train.loss={name: focal, gamma: 2}"}},
      {"cb_focal",
       {"phase_i.train.loss={name: focal, gamma: 1, weighting: class_balanced, beta: 0.99}"}},
      {"ldam_drw",
       {"model.classifier=cosine",
        "phase_i.train.loss={name: ldam, max_margin: 0.5, scale: 30, weighting: drw, "
        "drw_epoch: 1}"}},
      {"balanced_softmax",
       {"phase_i.train.loss=balanced_softmax", "phase_i.train.sampler=square_root"}},
      {"cb_sampler", {"phase_i.train.sampler=class_balanced", "test.interval=2"}},
      {"progressive", {"phase_i.train.sampler=progressive"}},
  };
  for (const auto& [name, sets] : runs) {
    std::string args = "train --config " + path("recipe.yaml") + " --out " + path(name);
    std::string test_args = "test --config " + path("recipe.yaml") + " --checkpoint " +
                            path(name + "/checkpoints/last.pt") + " --out " + path(name + "_t");
    for (const auto& s : sets) {
      args += " --set '" + s + "'";
      if (s.rfind("model.", 0) == 0) test_args += " --set '" + s + "'";
    }
    std::string out;
    ASSERT_EQ(fsa(args, &out), 0) << name << "\n" << out;
    const auto log = read_text(path(name + "/log.txt"));
    EXPECT_NE(log.find("phase_i: loss "), std::string::npos) << name;
    const auto m = nlohmann::json::parse(read_text(path(name + "/metrics.json")))["phase_i"];
    EXPECT_EQ(m["best_selected_on"], "test") << name;
    EXPECT_EQ(m["history"].size(), 2u) << name;
    ASSERT_EQ(fsa(test_args, &out), 0) << name << "\n" << out;
    EXPECT_DOUBLE_EQ(top1_of(path(name + "_t/metrics.json"), "test"), m["top1"].get<double>())
        << name;
  }
  // A cosine network tested as a linear one, and the other way round: refused,
  // naming model.classifier, never evaluated with a dropped bias.
  std::string out;
  ASSERT_EQ(fsa("test --config " + path("recipe.yaml") + " --checkpoint " +
                    path("ldam_drw/checkpoints/last.pt") + " --out " + path("wrong1"),
                &out),
            4);
  EXPECT_NE(out.find("model.classifier: cosine"), std::string::npos) << out;
  ASSERT_EQ(fsa("test --config " + path("recipe.yaml") +
                    " --set model.classifier=cosine "
                    "--checkpoint " +
                    phase_i() + " --out " + path("wrong2"),
                &out),
            4);
  EXPECT_NE(out.find("model.classifier: cosine"), std::string::npos) << out;
  // test.interval 2 of 2 epochs: the first epoch is not evaluated.
  const auto cb = nlohmann::json::parse(read_text(path("cb_sampler/metrics.json")))["phase_i"];
  EXPECT_FALSE(cb["history"][0].contains("test_acc"));
  EXPECT_TRUE(cb["history"][1].contains("test_acc"));
}

TEST_F(Methods, PostHocLogitAdjustmentChangesTheTestOnly) {
  std::string out;
  ASSERT_EQ(fsa("test --config " + path("recipe.yaml") + " --checkpoint " + phase_i() +
                    " --set test.logit_adjust_tau=0 --out " + path("la0"),
                &out),
            0)
      << out;
  ASSERT_EQ(fsa("test --config " + path("recipe.yaml") + " --checkpoint " + phase_i() +
                    " --set test.logit_adjust_tau=1 --out " + path("la1"),
                &out),
            0)
      << out;
  const auto plain = nlohmann::json::parse(read_text(path("la0/metrics.json")))["test"];
  const auto adjusted = nlohmann::json::parse(read_text(path("la1/metrics.json")))["test"];
  // Subtracting log π favours the rare classes: their accuracy cannot fall.
  EXPECT_GE(adjusted["tail"].get<double>(), plain["tail"].get<double>());
  EXPECT_NE(adjusted["loss"].get<double>(), plain["loss"].get<double>());
}

TEST_F(Methods, CrtRetrainsOnlyAFreshClassifier) {
  decouple("crt", "crt");
  const auto before = load(phase_i()), after = load(path("crt/checkpoints/last.pt"));
  auto p0 = before->named_parameters(), p1 = after->named_parameters();
  for (const auto& kv : p0) {
    const bool classifier = kv.key().rfind("linear.", 0) == 0;
    EXPECT_EQ(torch::equal(kv.value(), p1[kv.key()]), !classifier) << kv.key();
  }
  for (const auto& kv : before->named_buffers()) {  // batch norm statistics stay frozen
    EXPECT_TRUE(torch::equal(kv.value(), after->named_buffers()[kv.key()])) << kv.key();
  }
  const auto m = nlohmann::json::parse(read_text(path("crt/metrics.json")))["decouple"];
  EXPECT_EQ(m["method"], "crt");
  EXPECT_EQ(m["history"].size(), 2u);
  expect_test_reproduces("crt", "decouple");
  // The table names the Phase I network the classifier sits on.
  std::string out;
  ASSERT_EQ(fsa("table " + path("crt"), &out), 0) << out;
  EXPECT_NE(out.find("| cRT on CE | +2 ep |"), std::string::npos) << out;
}

TEST_F(Methods, CrtStartsFromTheSeededDefaultInitialisation) {
  // With a learning rate too small to move it, cRT ends at PyTorch's default
  // nn.Linear initialisation drawn after torch.manual_seed(seed).
  decouple("crt", "crt0",
           "--set decouple.train.num_epoch=1 --set decouple.train.optimizer.kwargs.lr=1e-30");
  torch::manual_seed(5);
  torch::nn::Linear fresh(64, 4);
  const auto after = load(path("crt0/checkpoints/last.pt"));
  EXPECT_TRUE(torch::allclose(after->classifier()->weight, fresh->weight));
  EXPECT_TRUE(torch::allclose(after->classifier()->bias, fresh->bias));
}

TEST_F(Methods, LwsRescalesEachRowOfThePhaseIClassifier) {
  decouple("lws", "lws");
  const auto before = load(phase_i()), after = load(path("lws/checkpoints/last.pt"));
  const auto w0 = before->classifier()->weight, w1 = after->classifier()->weight;
  const auto b0 = before->classifier()->bias, b1 = after->classifier()->bias;
  // w1_c = f_c·w0_c and b1_c = f_c·b0_c with one f_c per class.
  const auto f = (w1 * w0).sum(1) / (w0 * w0).sum(1);
  EXPECT_TRUE(torch::allclose(w1, w0 * f.unsqueeze(1), 1e-4, 1e-6));
  EXPECT_TRUE(torch::allclose(b1, b0 * f, 1e-4, 1e-6));
  EXPECT_FALSE(torch::allclose(f, torch::ones_like(f)));  // the scales did learn
  expect_test_reproduces("lws", "decouple");
  // LWS keeps its scales outside the checkpointed network: it does not
  // resume (cRT does; tests/fault/kill_test.cpp resumes it after kills).
  std::string out;
  EXPECT_EQ(fsa("decouple --config " + path("recipe.yaml") + " --checkpoint " + phase_i() +
                    " --method lws --resume " + path("lws/checkpoints/last.pt") + " --out " +
                    path("lws"),
                &out),
            2)
      << out;
  EXPECT_NE(out.find("lws does not resume"), std::string::npos) << out;
}

TEST_F(Methods, TauNormWeightNorms) {
  // By hand: rows (3, 4) and (0, 0.5): norms 5 and 0.5; τ = 1 gives unit rows,
  // τ = 0.5 norms 5^0.5 and 0.5^0.5, τ = 0 the weights themselves.
  const auto w = torch::tensor({3.0f, 4.0f, 0.0f, 0.5f}).view({2, 2});
  const auto unit = fsa::train::tau_normalize(w, 1.0);
  EXPECT_TRUE(torch::allclose(unit, torch::tensor({0.6f, 0.8f, 0.0f, 1.0f}).view({2, 2})));
  const auto half = fsa::train::tau_normalize(w, 0.5).norm(2, 1);
  EXPECT_NEAR(half[0].item<double>(), std::sqrt(5.0), 1e-6);
  EXPECT_NEAR(half[1].item<double>(), std::sqrt(0.5), 1e-6);
  EXPECT_TRUE(torch::equal(fsa::train::tau_normalize(w, 0.0), w));

  decouple("tau_norm", "tau", "--set decoupling.tau=1");
  const auto after = load(path("tau/checkpoints/last.pt"));
  const auto norms = after->classifier()->weight.norm(2, 1);
  EXPECT_TRUE(torch::allclose(norms, torch::ones_like(norms), 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(after->classifier()->bias, torch::zeros({4})));
  expect_test_reproduces("tau", "decouple");
  // Decoupling starts from a Phase I network, and training needs a schedule.
  std::string out;
  ASSERT_EQ(fsa("decouple --config " + path("recipe.yaml") + " --checkpoint " +
                    path("tau/checkpoints/last.pt") + " --out " + path("bad"),
                &out),
            4);
  EXPECT_NE(out.find("Phase I network"), std::string::npos) << out;
  std::string without = read_text(path("recipe.yaml"));
  std::ofstream(path("no_decouple.yaml")) << without.substr(0, without.find("decouple:"));
  ASSERT_EQ(fsa("decouple --config " + path("no_decouple.yaml") + " --checkpoint " + phase_i() +
                    " --method lws --out " + path("bad"),
                &out),
            2);
  EXPECT_NE(out.find("no 'decouple' section"), std::string::npos) << out;
  // LWS on a cosine classifier would be undone by its normalisation.
  ASSERT_EQ(fsa("decouple --config " + path("recipe.yaml") + " --checkpoint " + phase_i() +
                    " --method lws --set model.classifier=cosine --out " + path("bad"),
                &out),
            2);
  EXPECT_NE(out.find("lws scales classifier rows"), std::string::npos) << out;
  // Phase III draws its own groups: a sampler for it is refused, not ignored.
  ASSERT_EQ(fsa("run --config " + path("recipe.yaml") +
                    " --set train.sampler=class_balanced "
                    "--out " +
                    path("bad"),
                &out),
            2);
  EXPECT_NE(out.find("Phase III draws its own balanced groups"), std::string::npos) << out;
  // τ belongs to tau_norm alone.
  EXPECT_EQ(fsa("decouple --config " + path("recipe.yaml") + " --checkpoint " + phase_i() +
                    " --method crt --set decoupling.tau=1 --out " + path("bad"),
                &out),
            2);
  EXPECT_NE(out.find("decoupling.tau"), std::string::npos) << out;
}

TEST_F(Methods, AValidationSplitChoosesTheBestEpochAndTau) {
  std::string out;
  ASSERT_EQ(fsa("train --config " + path("recipe.yaml") + " --set dataset.val_fraction=0.2 --out " +
                    path("val"),
                &out),
            0)
      << out;
  EXPECT_NE(out.find("12 validation images (0.2 of each class held out"), std::string::npos) << out;
  const auto m = nlohmann::json::parse(read_text(path("val/metrics.json")))["phase_i"];
  EXPECT_EQ(m["best_selected_on"], "validation");
  // The imbalance factor 5 keeps 30, 17, 10, 6 images (floor(30·5^(−i/3)));
  // round(0.2·n) of them are held out: 6 + 3 + 2 + 1.
  EXPECT_EQ(m["val_images"], 12);
  EXPECT_EQ(m["class_counts"], (std::vector<int64_t>{24, 14, 8, 5}));
  const auto& history = m["history"];
  double best_val = -1;
  int64_t best_epoch = 0;
  for (const auto& e : history) {
    if (e["val_acc"].get<double>() > best_val) {
      best_val = e["val_acc"].get<double>();
      best_epoch = e["epoch"].get<int64_t>();
    }
  }
  EXPECT_EQ(m["best_epoch"].get<int64_t>(), best_epoch);
  EXPECT_DOUBLE_EQ(m["best_val_top1"].get<double>(), best_val);
  EXPECT_DOUBLE_EQ(m["best_top1"].get<double>(),
                   history[size_t(best_epoch - 1)]["test_acc"].get<double>());

  // τ searched on the same validation split: the first τ of the grid with
  // the best validation top-1, and the test figures of that τ.
  ASSERT_EQ(fsa("decouple --config " + path("recipe.yaml") + " --checkpoint " +
                    path("val/checkpoints/last.pt") +
                    " --method tau_norm --set decoupling.tau=search --set dataset.val_fraction=0.2"
                    " --out " +
                    path("tau_search"),
                &out),
            0)
      << out;
  const auto d = nlohmann::json::parse(read_text(path("tau_search/metrics.json")))["decouple"];
  ASSERT_EQ(d["tau_search"].size(), fsa::train::tau_grid().size());
  double best = -1, chosen = -1;
  for (const auto& t : d["tau_search"]) {
    if (t["val_top1"].get<double>() > best) {
      best = t["val_top1"].get<double>();
      chosen = t["tau"].get<double>();
    }
  }
  EXPECT_DOUBLE_EQ(d["tau"].get<double>(), chosen);
  EXPECT_EQ(d["tau_selected_on"], "validation");
  ASSERT_EQ(fsa("decouple --config " + path("recipe.yaml") + " --checkpoint " +
                    path("val/checkpoints/last.pt") +
                    " --method tau_norm --set decoupling.tau=" + std::to_string(chosen) +
                    " --set dataset.val_fraction=0.2 --out " + path("tau_fixed"),
                &out),
            0)
      << out;
  EXPECT_DOUBLE_EQ(top1_of(path("tau_fixed/metrics.json"), "decouple"), d["top1"].get<double>());
  // Without a validation split there is nothing to search on.
  ASSERT_EQ(fsa("decouple --config " + path("recipe.yaml") + " --checkpoint " + phase_i() +
                    " --method tau_norm --set decoupling.tau=search --out " + path("bad"),
                &out),
            2);
  EXPECT_NE(out.find("set dataset.val_fraction"), std::string::npos) << out;
  // A network trained on the images now held out: warned, as its figures flatter.
  ASSERT_EQ(fsa("decouple --config " + path("recipe.yaml") + " --checkpoint " + phase_i() +
                    " --method tau_norm --set decoupling.tau=search --set dataset.val_fraction=0.2"
                    " --out " +
                    path("tau_leak"),
                &out),
            0)
      << out;
  EXPECT_NE(out.find("on the images now held out"), std::string::npos) << out;
}

TEST_F(Methods, ResumeRefusesAnotherRunAndCompletesAFinishedOne) {
  // A copy of the finished 2-epoch CE run to resume from.
  std::filesystem::copy(path("ce"), path("ce_resume"), std::filesystem::copy_options::recursive);
  const auto last = path("ce_resume/checkpoints/last.pt");
  std::string out;
  auto resume = [&](const std::string& sets) {
    return fsa("train --config " + path("recipe.yaml") + " --resume " + last + " " + sets +
                   " --out " + path("ce_resume"),
               &out);
  };
  // What changes the run's meaning is refused, naming what differs (the seed
  // through the training set's fingerprint, settings by key with both values).
  EXPECT_EQ(resume("--set phase_i.train.num_epoch=3 --set random_seed=6"), 4) << out;
  EXPECT_NE(out.find("(checkpoint vs now: random seed 5 vs 6)"), std::string::npos) << out;
  EXPECT_EQ(resume("--set phase_i.train.num_epoch=3 --set phase_i.train.optimizer.kwargs.lr=0.1"),
            4)
      << out;
  EXPECT_NE(out.find("train.optimizer.kwargs.lr: 0.05 → 0.1"),
            std::string::npos)
      << out;
  EXPECT_EQ(resume("--set phase_i.train.num_epoch=3 --set dataset.kwargs.im=4"), 4) << out;
  EXPECT_NE(out.find("another training set"), std::string::npos) << out;
  // Renamed class folders (the same order, so the same images and labels).
  std::filesystem::copy(path("data"), path("renamed"), std::filesystem::copy_options::recursive);
  for (const auto* split : {"train", "test"}) {
    std::filesystem::rename(path("renamed/") + split + "/class_3",
                            path("renamed/") + split + "/class_3b");
  }
  EXPECT_EQ(resume("--set phase_i.train.num_epoch=3 --set dataset.root=" + path("renamed")), 4)
      << out;
  EXPECT_NE(out.find("class 3 is 'class_3' there and 'class_3b' now"), std::string::npos) << out;
  // Deliberate overrides are logged and the run goes on.
  ASSERT_EQ(resume("--set phase_i.train.num_epoch=3 --set threads=1"), 0) << out;
  EXPECT_NE(out.find("differs from the checkpoint's: threads: 2 → 1"), std::string::npos) << out;
  EXPECT_NE(out.find("train.num_epoch: 2 → 3"), std::string::npos) << out;
  // A finished run (metrics.json lost to a kill) completes its outputs.
  std::filesystem::remove(path("ce_resume/metrics.json"));
  ASSERT_EQ(resume("--set phase_i.train.num_epoch=3"), 0) << out;
  EXPECT_NE(out.find("has finished all 3 epochs"), std::string::npos) << out;
  const auto m = nlohmann::json::parse(read_text(path("ce_resume/metrics.json")))["phase_i"];
  EXPECT_EQ(m["history"].size(), 3u);
  EXPECT_EQ(fsa::train::read_checkpoint_info(last).epoch, 3);
}

TEST_F(Methods, AReusedOutFolderIsRefusedUnlessResumedOrOverwritten) {
  std::string out;
  // `fsa test` into a training run's folder would replace its metrics.json.
  const auto metrics = read_text(path("ce/metrics.json"));
  EXPECT_EQ(fsa("test --config " + path("recipe.yaml") + " --checkpoint " + phase_i() + " --out " +
                    path("ce"),
                &out),
            2);
  EXPECT_NE(out.find("--out '" + path("ce") +
                     "' holds an earlier run's outputs (checkpoints, "
                     "config.yaml, "),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("--overwrite to replace them, or --resume to continue that run"),
            std::string::npos)
      << out;
  EXPECT_EQ(read_text(path("ce/metrics.json")), metrics);
  // --overwrite: the earlier run's files go (a stale epoch checkpoint, its
  // event file, its log), the user's stay, and the new run is alone.
  std::filesystem::copy(path("ce"), path("reused"), std::filesystem::copy_options::recursive);
  std::filesystem::copy_file(phase_i(), path("reused/checkpoints/epoch_0002.pt"));
  std::ofstream(path("reused/notes.txt")) << "mine";
  ASSERT_EQ(fsa("train --config " + path("recipe.yaml") +
                    " --set phase_i.train.num_epoch=1 --overwrite --out " + path("reused"),
                &out),
            0)
      << out;
  EXPECT_NE(out.find("--overwrite: removed the earlier run's outputs from"), std::string::npos)
      << out;
  EXPECT_FALSE(std::filesystem::exists(path("reused/checkpoints/epoch_0002.pt")));
  EXPECT_EQ(read_text(path("reused/notes.txt")), "mine");
  int event_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(path("reused"))) {
    event_files += e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  }
  EXPECT_EQ(event_files, 1);
  const auto log = read_text(path("reused/log.txt"));
  EXPECT_EQ(log.find("epoch 2/2"), std::string::npos) << log;  // the earlier run's lines
  EXPECT_NE(log.find("epoch 1/1"), std::string::npos) << log;
  const auto m = nlohmann::json::parse(read_text(path("reused/metrics.json")))["phase_i"];
  EXPECT_EQ(m["history"].size(), 1u);
}

TEST_F(Methods, FinetuneRefusesAnAnalysisOfAnotherNetwork) {
  std::string out;
  ASSERT_EQ(fsa("extract --config " + path("recipe.yaml") + " --checkpoint " + phase_i() +
                    " --out " + path("p2"),
                &out),
            0)
      << out;
  // Another Phase I network on the same training set (another initialisation).
  ASSERT_EQ(fsa("train --config " + path("recipe.yaml") +
                    " --set phase_i.train.num_epoch=1 --set phase_i.train.optimizer.kwargs.lr=0.01"
                    " --out " +
                    path("other"),
                &out),
            0)
      << out;
  EXPECT_EQ(fsa("finetune --config " + path("recipe.yaml") + " --checkpoint " +
                    path("other/checkpoints/last.pt") + " --analysis " + path("p2/analysis.pt") +
                    " --out " + path("mixed"),
                &out),
            4);
  EXPECT_NE(out.find("was made from another Phase I network"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(path("mixed/checkpoints")));
  ASSERT_EQ(fsa("finetune --config " + path("recipe.yaml") + " --checkpoint " + phase_i() +
                    " --analysis " + path("p2/analysis.pt") + " --out " + path("matched"),
                &out),
            0)
      << out;
}

TEST_F(Methods, SigintStopsAfterTheBatchAndKeepsTheLastFinishedEpoch) {
  // A long run, interrupted as soon as its first checkpoint exists.
  const auto last = path("sigint/checkpoints/last.pt");
  const std::string script =
      std::string(FSA_BINARY) + " train --config " + path("recipe.yaml") +
      " --set phase_i.train.num_epoch=500 --out " + path("sigint") + " > " + path("sigint.log") +
      " 2>&1 & pid=$!; for i in $(seq 600); do [ -f " + last +
      " ] && break; sleep 0.1; done; kill -INT $pid; wait $pid; echo $? > " + path("sigint.rc");
  ASSERT_EQ(std::system(("bash -c '" + script + "'").c_str()), 0);
  EXPECT_EQ(read_text(path("sigint.rc")), "130\n");
  const auto log = read_text(path("sigint.log"));
  EXPECT_NE(log.find("stopped by SIGINT (Ctrl-C) during"), std::string::npos) << log;
  EXPECT_NE(log.find("continue with --resume " + last), std::string::npos) << log;
  const auto kept = fsa::train::read_checkpoint_info(last);
  EXPECT_GE(kept.epoch, 1);
  EXPECT_LT(kept.epoch, 500);
  // The run goes on from there.
  std::string out;
  ASSERT_EQ(fsa("train --config " + path("recipe.yaml") +
                    " --set phase_i.train.num_epoch=" + std::to_string(kept.epoch + 1) +
                    " --resume " + last + " --out " + path("sigint"),
                &out),
            0)
      << out;
  EXPECT_EQ(fsa::train::read_checkpoint_info(last).epoch, kept.epoch + 1);
}

TEST_F(Methods, ExportWritesTheWeightsWithoutTheOptimiser) {
  std::string out;
  const auto exported = path("exported/checkpoints/last.pt");
  ASSERT_EQ(fsa("export --checkpoint " + phase_i() + " --out " + exported, &out), 0) << out;
  EXPECT_LT(std::filesystem::file_size(exported), std::filesystem::file_size(phase_i()));
  const auto info = fsa::train::read_checkpoint_info(exported);
  EXPECT_EQ(info.epoch, 2);
  EXPECT_EQ(info.phase, "phase_i");
  std::filesystem::copy_file(path("ce/metrics.json"), path("exported/metrics.json"));
  expect_test_reproduces("exported", "phase_i");
  // Weights alone cannot be resumed: the momentum would silently restart.
  EXPECT_EQ(fsa("train --config " + path("recipe.yaml") + " --set phase_i.train.num_epoch=3" +
                    " --resume " + exported + " --out " + path("exported_resume"),
                &out),
            4);
  EXPECT_NE(out.find("holds no optimiser state"), std::string::npos) << out;
}

}  // namespace
