// `fsa predict` on tiny synthetic data: the predictions `fsa test` counts, the
// logits of the network on the dataset's own test tensors, overlays, and bad
// input.
#include "fsa/train/predict.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "fsa/data/long_tail.h"
#include "fsa/data/transforms.h"
#include "fsa/io/config.h"
#include "fsa/io/torch_file.h"
#include "fsa/train/checkpoint.h"
#include "test_util.h"

namespace {

using fsa::testing::read_text;
using fsa::testing::TempDir;
namespace fs = std::filesystem;

// Four classes of 30, 18, 10, 6 training images and 5 test images each; fp32
// so that the comparisons below do not depend on this processor's bfloat16.
const char* kConfig = R"(random_seed: 3
threads: 2
precision: fp32
dataset: {name: ImageFolder-LT, root: ROOT, kwargs: {im: 5}}
model: {name: resnet20}
finetune: {head_ratio: 0.6}
test: {batch_size: 64}
train:
  num_epoch: 1
  batch_size: 16
  optimizer: {name: SGD, kwargs: {lr: 0.05, momentum: 0.9}}
  lr_scheduler: {name: constant}
)";

class Predict : public ::testing::Test {
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
    ASSERT_EQ(fsa::testing::run_command(bin + "train --quiet" + cfg_arg + " --out " + path("p1"),
                                        log),
              0)
        << read_text(log);
    ASSERT_EQ(fsa::testing::run_command(
                  bin + "test" + cfg_arg + " --checkpoint " + checkpoint() + " --out " + path("t"),
                  log),
              0)
        << read_text(log);
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string path(const std::string& name) { return *dir_ / name; }
  static std::string checkpoint() { return path("p1/checkpoints/last.pt"); }
  int fsa(const std::string& args, std::string* output = nullptr) {
    return fsa::testing::run_fsa(*dir_, "predict --checkpoint " + checkpoint() + " " + args,
                                 output);
  }

  static TempDir* dir_;
};
TempDir* Predict::dir_ = nullptr;

nlohmann::json read_json(const std::string& file) {
  return nlohmann::json::parse(read_text(file));
}

TEST_F(Predict, WithOneCorruptFileTheOthersAreTheOnesFsaTestCounts) {
  // The test images and one file that is no image, in a class folder.
  fs::copy(path("data/test"), path("mixed"), fs::copy_options::recursive);
  std::ofstream(path("mixed/class_1/broken.png")) << "not a PNG at all";
  std::string out;
  ASSERT_EQ(fsa("--folder " + path("mixed") + " --json " + path("p.json") + " --csv " +
                    path("p.csv") + " --logits " + path("p.npy") + " --top-k 2",
                &out),
            3)
      << out;
  EXPECT_NE(out.find("broken.png"), std::string::npos) << out;
  EXPECT_NE(out.find("1 of 21 images could not be predicted"), std::string::npos) << out;
  const auto p = read_json(path("p.json"));
  const auto names = p.at("class_names").get<std::vector<std::string>>();
  ASSERT_EQ(names, (std::vector<std::string>{"class_0", "class_1", "class_2", "class_3"}));
  // The confusion matrix of the predictions, the true class from each
  // image's folder, against the one `fsa test` wrote.
  std::vector<std::vector<int64_t>> confusion(4, std::vector<int64_t>(4, 0));
  ASSERT_EQ(p.at("predictions").size(), 21u);
  int errors = 0;
  for (const auto& row : p.at("predictions")) {
    const auto image = row.at("image").get<std::string>();
    if (row.contains("error")) {
      ++errors;
      EXPECT_NE(image.find("broken.png"), std::string::npos) << row.dump();
      continue;
    }
    const auto folder = fs::path(image).parent_path().filename();
    const auto truth = std::find(names.begin(), names.end(), folder.string()) - names.begin();
    ASSERT_LT(truth, 4) << row.dump();
    ASSERT_EQ(row.at("top").size(), 2u) << row.dump();
    const auto first = row.at("top")[0], second = row.at("top")[1];
    EXPECT_GE(first.at("probability").get<double>(), second.at("probability").get<double>());
    confusion[truth][first.at("class").get<size_t>()] += 1;
  }
  EXPECT_EQ(errors, 1);
  const auto expected = read_json(path("t/metrics.json")).at("test").at("confusion");
  EXPECT_EQ(nlohmann::json(confusion), expected);
  EXPECT_EQ(p.at("preprocessing").at("height"), 32);
  // The CSV: a header and one line per image, in the JSON's order.
  std::istringstream csv(read_text(path("p.csv")));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "image,class_1,name_1,probability_1,class_2,name_2,probability_2,error");
  for (const auto& row : p.at("predictions")) {
    ASSERT_TRUE(std::getline(csv, line));
    const auto image = row.at("image").get<std::string>();
    const auto start = row.contains("error")
                           ? image + ",,,,,,,"
                           : image + "," + std::to_string(row.at("top")[0].at("class").get<int>()) +
                                 "," + row.at("top")[0].at("name").get<std::string>() + ",";
    EXPECT_EQ(line.rfind(start, 0), 0u) << line;
  }
  // The terminal table names each image; the .npy holds 21 × 4 float32 logits.
  EXPECT_NE(out.find("0000.png"), std::string::npos) << out;
  const auto npy = read_text(path("p.npy"));
  ASSERT_GT(npy.size(), 10u);
  const size_t header = 10 + (static_cast<unsigned char>(npy[8]) | npy[9] << 8);
  EXPECT_EQ(npy.size(), header + 21 * 4 * sizeof(float));
}

TEST_F(Predict, LogitsAndFeaturesAreTheNetworksOnTheDatasetsTestTensors) {
  const auto cfg = fsa::io::load_config(path("config.yaml"), {}, "phase_i");
  const auto data =
      fsa::data::load_long_tail_dataset(cfg.dataset, cfg.finetune, *cfg.random_seed, 1);
  fsa::train::CheckpointInfo info;
  auto model = fsa::train::load_checkpoint_model(checkpoint(), &info);
  const auto x = fsa::data::normalize(data.test.images, data.mean, data.std);
  torch::Tensor logits, features;
  {
    torch::NoGradGuard no_grad;
    const auto last = model->stage_names().back();
    const auto a = model->features(x, last);
    logits = model->head(a, last);
    features = a.mean({2, 3});
  }
  std::vector<std::string> classes;
  fsa::train::PredictOptions opts;
  opts.checkpoint = checkpoint();
  opts.images = fsa::train::images_in_folder(path("data/test"));
  opts.batch_size = 7;  // three batches, the last one short
  opts.precision = "fp32";
  opts.threads = 2;
  const auto p = fsa::train::predict(opts);
  ASSERT_EQ(p.failed(), 0);
  EXPECT_TRUE(torch::allclose(p.logits, logits, 1e-5, 1e-5))
      << (p.logits - logits).abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(p.features, features, 1e-5, 1e-5));
  EXPECT_EQ(p.features.size(1), 64);  // ResNet-20's last stage
  // The checkpoint records the preprocessing, and config.yaml the resolved mean/std.
  EXPECT_EQ(fsa::data::Preprocessing::from_json(nlohmann::json::parse(info.preprocessing)),
            data.preprocessing);
  const auto recorded = YAML::LoadFile(path("p1/config.yaml"))["dataset"]["normalize"];
  EXPECT_EQ(recorded["mean"].as<std::vector<double>>(), data.mean);
  EXPECT_EQ(recorded["std"].as<std::vector<double>>(), data.std);
}

TEST_F(Predict, CamOverlaysOfThePredictedClass) {
  std::string out;
  ASSERT_EQ(fsa(path("data/test/class_3/0000.png") + " " + path("data/test/class_0/0001.png") +
                    " --cam " + path("cams") + " --json " + path("cams.json"),
                &out),
            0)
      << out;
  const auto p = read_json(path("cams.json")).at("predictions");
  ASSERT_EQ(p.size(), 2u);
  for (const auto& row : p) {
    const auto file = row.at("cam").get<std::string>();
    const cv::Mat m = cv::imread(file, cv::IMREAD_COLOR);
    ASSERT_FALSE(m.empty()) << file;
    EXPECT_EQ(m.rows, 128);  // 32×32 enlarged ×4
    EXPECT_EQ(m.cols, 128);
  }
  EXPECT_NE(p[0].at("cam").get<std::string>().find("0000_0000.png"), std::string::npos);
}

TEST_F(Predict, BadOptionsAreNamed) {
  std::string out;
  EXPECT_EQ(fsa("", &out), 2) << out;
  EXPECT_NE(out.find("no images given"), std::string::npos) << out;
  EXPECT_EQ(fsa(path("data/test/class_0/0000.png") + " --top-k 0", &out), 2) << out;
  EXPECT_EQ(fsa(path("data/test/class_0/0000.png") + " --model resnet50", &out), 2) << out;
  EXPECT_NE(out.find("holds resnet20"), std::string::npos) << out;
  // Outputs are checked before any image is read: never an input, a folder
  // or a file in a folder that does not exist.
  const auto image = path("data/test/class_0/0000.png");
  const auto size = fs::file_size(checkpoint());
  EXPECT_EQ(fsa(image + " --json " + checkpoint(), &out), 2) << out;
  EXPECT_NE(out.find("is an input"), std::string::npos) << out;
  EXPECT_EQ(fs::file_size(checkpoint()), size);
  EXPECT_EQ(fsa(image + " --csv " + image, &out), 2) << out;
  EXPECT_EQ(fsa(image + " --json " + path("same.out") + " --csv " + path("same.out"), &out), 2)
      << out;
  EXPECT_EQ(fsa(image + " --json " + path("data"), &out), 2) << out;
  EXPECT_NE(out.find("--json '" + path("data") + "' is a folder"), std::string::npos) << out;
  EXPECT_EQ(fsa(image + " --logits " + path("nowhere/x.npy"), &out), 2) << out;
  EXPECT_NE(out.find("does not exist"), std::string::npos) << out;
  EXPECT_EQ(fsa(image + " --cam " + image, &out), 2) << out;
  EXPECT_EQ(fsa("--folder " + path("nowhere"), &out), 3) << out;
  EXPECT_NE(out.find("nowhere"), std::string::npos) << out;
  std::ofstream(path("list.txt")) << "\xEF\xBB\xBF" << "class_1/0002.png 1\n\nclass_0/0000.png\n";
  EXPECT_EQ(fsa("--list " + path("list.txt") + " --root " + path("data/test") + " --json " +
                    path("list.json"),
                &out),
            0)
      << out;
  const auto p = read_json(path("list.json")).at("predictions");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].at("image"), path("data/test/class_1/0002.png"));
  EXPECT_EQ(fsa::testing::run_fsa(*dir_,
                                  "predict --checkpoint " + path("nothing.pt") + " " +
                                      path("data/test/class_0/0000.png"),
                                  &out),
            4)
      << out;
}

}  // namespace
