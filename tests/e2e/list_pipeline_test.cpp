// The whole program on a list-file dataset (ImageNet-LT's layout: a root of
// image files and `relative/path label` split lists), with an ImageNet ResNet
// and the ImageNet transforms: all three phases, `fsa test`, and a bad list.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace {

using fsa::testing::read_text;
using fsa::testing::TempDir;
namespace fs = std::filesystem;

const char* kConfig = R"(random_seed: 3
threads: 2
dataset:
  name: ListFile-LT
  root: ROOT
  train_list: lists/train.txt
  test_list: lists/test.txt
  num_workers: 2
  transform: {crop_size: 48, resize_size: 56, color_jitter: 0.4}
model: {name: resnet10}
feature: {cam_layers: layer4}
finetune: {Na: 1, Nf: 1, head_ratio: 0.6}
test: {batch_size: 32}
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
    optimizer: {name: AdamW, kwargs: {lr: 0.0001, weight_decay: 0.01}}
    lr_scheduler: {name: constant}
)";

/// Writes `name` listing every image of root/<split>/class_<c>/ as
/// "<split>/class_<c>/<file> c", CRLF line ends and a blank line included.
void write_list(const std::string& root, const std::string& split, const std::string& name) {
  std::vector<std::string> lines;
  for (const auto& cls : fs::directory_iterator(root + "/" + split)) {
    const auto folder = cls.path().filename().string();
    const auto label = folder.substr(folder.find('_') + 1);
    for (const auto& f : fs::directory_iterator(cls.path())) {
      lines.push_back(split + "/" + folder + "/" + f.path().filename().string() + " " + label);
    }
  }
  std::sort(lines.begin(), lines.end());
  fs::create_directories(fs::path(name).parent_path());
  std::ofstream out(name, std::ios::binary);
  for (const auto& l : lines) out << l << "\r\n";
  out << "\n";
}

class ListPipeline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const auto root = *dir_ / "data";
    fsa::testing::make_image_folder(root, {30, 14, 8, 5}, 4);
    write_list(root, "train", root + "/lists/train.txt");
    write_list(root, "test", root + "/lists/test.txt");
    std::string cfg = kConfig;
    cfg.replace(cfg.find("ROOT"), 4, root);
    std::ofstream(*dir_ / "list.yaml") << cfg;
  }
  static void TearDownTestSuite() { delete dir_; }

  int fsa(const std::string& args, std::string* output = nullptr) {
    return fsa::testing::run_fsa(*dir_, args, output);
  }
  static std::string path(const std::string& name) { return *dir_ / name; }

  static TempDir* dir_;
};
TempDir* ListPipeline::dir_ = nullptr;

TEST_F(ListPipeline, ThreePhasesAndTestOnImageFiles) {
  std::string out;
  ASSERT_EQ(fsa("run --config " + path("list.yaml") + " --out " + path("run"), &out), 0) << out;
  const auto m = nlohmann::json::parse(read_text(path("run/metrics.json")));
  // The lists are the long tail: nothing is subsampled.
  EXPECT_EQ(m["class_counts"], (std::vector<int64_t>{30, 14, 8, 5}));
  for (const auto* phase : {"phase_i", "phase_iii"}) {
    ASSERT_EQ(m[phase]["per_class"].size(), 4u) << phase;
    EXPECT_GE(m[phase]["top1"].get<double>(), 0.0);
    EXPECT_LE(m[phase]["top1"].get<double>(), 1.0);
  }
  EXPECT_EQ(m["phase_i"]["class_names"], (std::vector<std::string>{"class_0", "class_1",
                                                                    "class_2", "class_3"}));
  for (const auto* f : {"phase_i/checkpoints/last.pt", "phase_ii/analysis.pt",
                        "phase_ii/confusing_classes.txt", "phase_iii/checkpoints/last.pt",
                        "report.html", "contact_3_class_3.png"}) {
    EXPECT_TRUE(fs::exists(path("run/") + f)) << f;
  }
  EXPECT_NE(out.find("57 training images in 4 classes"), std::string::npos) << out;

  ASSERT_EQ(fsa("test --config " + path("list.yaml") + " --checkpoint " +
                    path("run/phase_iii/checkpoints/last.pt") + " --out " + path("test")),
            0);
  const auto t = nlohmann::json::parse(read_text(path("test/metrics.json")));
  EXPECT_NEAR(t["test"]["top1"].get<double>(), m["phase_iii"]["top1"].get<double>(), 1e-12);
}

TEST_F(ListPipeline, MissingImageNamesTheListLine) {
  const auto root = *dir_ / "data";
  const auto bad = root + "/lists/bad.txt";
  {
    std::ofstream(bad) << "train/class_0/0000.png 0\ntrain/class_0/missing.png 0\n";
  }
  std::string out;
  const int rc = fsa("train --config " + path("list.yaml") + " --set dataset.train_list=" + bad +
                         " --out " + path("bad"),
                     &out);
  EXPECT_EQ(rc, 3) << out;
  EXPECT_NE(out.find("bad.txt:2"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(path("bad")));
}

}  // namespace
