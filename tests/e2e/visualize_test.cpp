// Whole-program runs of `fsa visualize` on tiny synthetic data: overlays and
// contact sheets, fusion figures, and bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <opencv2/imgcodecs.hpp>

#include "test_util.h"

namespace {

using fsa::testing::read_text;
using fsa::testing::TempDir;
namespace fs = std::filesystem;

// Four classes of 30, 17, 10, 6 training images (IF 5); head_ratio 0.6 makes
// classes 0 and 1 the head (47 of 63 images) and 2, 3 the tail.
const char* kConfig = R"(random_seed: 5
threads: 2
dataset: {name: ImageFolder-LT, root: ROOT, kwargs: {im: 5}}
model: {name: resnet20}
finetune: {Na: 2, Nf: 1, head_ratio: 0.6}
test: {batch_size: 64}
train:
  num_epoch: 1
  batch_size: 16
  optimizer: {name: SGD, kwargs: {lr: 0.05, momentum: 0.9}}
  lr_scheduler: {name: constant}
)";

class Visualize : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    fsa::testing::make_image_folder(*dir_ / "data", {30, 18, 10, 6}, 5);
    std::string cfg = kConfig;
    cfg.replace(cfg.find("ROOT"), 4, *dir_ / "data");
    std::ofstream(*dir_ / "config.yaml") << cfg;
    const auto log = *dir_ / "setup.log";
    const auto bin = std::string(FSA_BINARY) + " ";
    const auto cfg_arg = " --config " + path("config.yaml");
    const auto train = bin + "train --quiet" + cfg_arg + " --out " + path("p1");
    ASSERT_EQ(fsa::testing::run_command(train, log), 0) << read_text(log);
    const auto extract =
        bin + "extract" + cfg_arg + " --checkpoint " + checkpoint() + " --out " + path("p2");
    ASSERT_EQ(fsa::testing::run_command(extract, log), 0) << read_text(log);
  }
  static void TearDownTestSuite() { delete dir_; }

  int fsa(const std::string& args, std::string* output = nullptr) {
    return fsa::testing::run_fsa(*dir_, "visualize --config " + path("config.yaml") + " " + args,
                                 output);
  }
  static std::string path(const std::string& name) { return *dir_ / name; }
  static std::string checkpoint() { return path("p1/checkpoints/last.pt"); }

  static TempDir* dir_;
};
TempDir* Visualize::dir_ = nullptr;

/// Decodes a PNG and checks its size (height, width) and that it has colour.
void expect_png(const std::string& file, int height, int width) {
  ASSERT_TRUE(fs::exists(file)) << file;
  const cv::Mat m = cv::imread(file, cv::IMREAD_UNCHANGED);
  ASSERT_FALSE(m.empty()) << file << " does not decode";
  EXPECT_EQ(m.rows, height) << file;
  EXPECT_EQ(m.cols, width) << file;
  EXPECT_EQ(m.channels(), 3) << file;
}

TEST_F(Visualize, OverlaysAndContactSheetsOfTheTailClasses) {
  std::string out;
  ASSERT_EQ(fsa("--checkpoint " + checkpoint() + " --out " + path("viz"), &out), 0) << out;
  // Tail classes 2 and 3, 5 test images each (indices 10..14, 15..19),
  // 32×32 enlarged ×4.
  for (int c : {2, 3}) {
    const auto folder = path("viz/overlays/" + std::to_string(c) + "_class_" + std::to_string(c));
    for (int i = 5 * c; i < 5 * c + 5; ++i) {
      expect_png(folder + "/" + std::to_string(i) + ".png", 128, 128);
    }
    // 5 cells in 4 columns: cells 2·128 + 4 wide, 128 + 2·16 high.
    expect_png(path("viz/contact_" + std::to_string(c) + "_class_" + std::to_string(c) + ".png"),
               28 + 8 + 2 * (160 + 8), 8 + 4 * (260 + 8));
  }
  EXPECT_FALSE(fs::exists(path("viz/overlays/0_class_0")));
  EXPECT_FALSE(fs::exists(path("viz/contact_1_class_1.png")));
}

TEST_F(Visualize, ChosenClassesSplitAndCount) {
  std::string out;
  const auto args = "--checkpoint " + checkpoint() + " --classes 0,3 --per-class 2 --split train";
  ASSERT_EQ(fsa(args + " --out " + path("viz_train"), &out), 0) << out;
  // Training images are in class order: class 0 first, class 3 from 30 + 17 + 10 = 57.
  expect_png(path("viz_train/overlays/0_class_0/0.png"), 128, 128);
  expect_png(path("viz_train/overlays/0_class_0/1.png"), 128, 128);
  expect_png(path("viz_train/overlays/3_class_3/57.png"), 128, 128);
  EXPECT_FALSE(fs::exists(path("viz_train/overlays/0_class_0/2.png")));
  expect_png(path("viz_train/contact_0_class_0.png"), 28 + 8 + 168, 8 + 2 * 268);
  EXPECT_FALSE(fs::exists(path("viz_train/overlays/2_class_2")));
}

TEST_F(Visualize, FusionFigures) {
  std::string out;
  const auto args =
      "--fusion --analysis " + path("p2/analysis.pt") + " --checkpoint " + checkpoint();
  ASSERT_EQ(fsa(args + " --out " + path("fusion"), &out), 0) << out;
  // 4 figures (tail classes 2, 3, 2, 3), Na = 2 rows of five 160×160 panels.
  for (int k = 0; k < 4; ++k) {
    expect_png(path("fusion/fusion_" + std::to_string(k) + ".png"), 28 + 2 * (32 + 160 + 8),
               8 + 5 * (160 + 8));
  }
  EXPECT_FALSE(fs::exists(path("fusion/fusion_4.png")));
  EXPECT_FALSE(fs::exists(path("fusion/overlays")));
}

TEST_F(Visualize, BadInputStopsWithAMessageAndNoFolder) {
  struct Case {
    std::string args;
    int rc;
    std::string says;
  };
  const auto ckpt = " --checkpoint " + checkpoint();
  const std::vector<Case> cases{
      {"--checkpoint /no/such/last.pt", 2, "/no/such/last.pt"},
      {"--checkpoint " + path("config.yaml"), 4, "config.yaml"},
      {ckpt + " --classes 2,7", 2, "class 7 is out of range"},
      {ckpt + " --classes -1", 2, "class -1"},
      {ckpt + " --classes 2,3,2", 2, "class 2 is listed twice"},
      {ckpt + " --classes ''", 105, "an empty class index"},
      {ckpt + " --per-class 0", 2, "--per-class"},
      {ckpt + " --split val", 2, "--split 'val'"},
      {ckpt + " --fusion", 2, "--analysis"},
      {ckpt + " --fusion --analysis /no/analysis.pt", 4, "/no/analysis.pt"},
      {ckpt + " --fusion --classes 0 --analysis " + path("p2/analysis.pt"), 2, "head class"},
      {"", 106, "--checkpoint"},
  };
  for (const auto& c : cases) {
    std::string out;
    const auto dir = path("bad_" + std::to_string(&c - cases.data()));
    const int rc = fsa(c.args + " --out " + dir, &out);
    EXPECT_EQ(rc, c.rc) << c.args << "\n" << out;
    EXPECT_NE(out.find(c.says), std::string::npos) << c.args << "\n" << out;
    EXPECT_EQ(out.find("terminate"), std::string::npos) << out;
    EXPECT_FALSE(fs::exists(dir)) << c.args << " left " << dir;
  }
}

}  // namespace
