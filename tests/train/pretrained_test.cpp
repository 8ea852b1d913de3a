// Weights that Python's PyTorch saved: tests/io/torch_files.py writes them
// with Debian's PyTorch (/usr/bin/python3, installed by scripts/setup.sh),
// with the logits PyTorch computes from them; fsa must read the same tensors
// in every format and compute the same logits.
#include "fsa/train/pretrained.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "fsa/io/config.h"
#include "fsa/io/torch_file.h"
#include "fsa/models/backbone.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/predict.h"
#include "test_util.h"

namespace fsa::train {
namespace {

using fsa::testing::error_message;
using fsa::testing::TempDir;

class PretrainedTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string cmd = std::string("/usr/bin/python3 ") + FSA_SOURCE_DIR +
                            "/tests/io/torch_files.py " + dir_->path();
    const int rc = fsa::testing::run_command(cmd, *dir_ / "python.log");
    ASSERT_EQ(rc, 0) << cmd << "\n" << fsa::testing::read_text(*dir_ / "python.log");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string file(const std::string& name) { return *dir_ / name; }

  /// The logits PyTorch computed for the inputs it saved beside them, and fsa's.
  static void expect_same_logits(models::Backbone& model, const std::string& logits_file) {
    const auto saved = io::read_torch_file(file(logits_file)).toGenericDict();
    const auto x = saved.at("x").toTensor();
    const auto expected = saved.at("logits").toTensor();
    model.eval();
    torch::NoGradGuard no_grad;
    const auto got = model.forward(x);
    ASSERT_EQ(got.sizes(), expected.sizes());
    EXPECT_TRUE(torch::allclose(got, expected, /*rtol=*/1e-4, /*atol=*/1e-4))
        << "largest difference " << (got - expected).abs().max().item<float>();
  }

  static TempDir* dir_;
};
TempDir* PretrainedTest::dir_ = nullptr;

TEST_F(PretrainedTest, EveryWayOfSavingAStateDictReadsTheSameTensors) {
  const auto plain = io::read_state_dict(file("r18.pth"));
  auto model = models::make_model("resnet18", 10);
  // torchvision's ResNet-18: 62 parameters and 60 BatchNorm buffers.
  ASSERT_EQ(plain.size(), 122u);
  EXPECT_EQ(plain.front().first, "conv1.weight");
  EXPECT_EQ(plain.back().first, "fc.bias");
  for (const char* name : {"r18_legacy.pth", "r18_wrapped.pth", "r18_torchvision_reference.pth"}) {
    SCOPED_TRACE(name);
    const auto other = io::read_state_dict(file(name));
    ASSERT_EQ(other.size(), plain.size());
    for (size_t i = 0; i < plain.size(); ++i) {
      ASSERT_EQ(other[i].first, plain[i].first);  // the module. prefix is gone
      ASSERT_EQ(other[i].second.dtype(), plain[i].second.dtype());
      ASSERT_TRUE(torch::equal(other[i].second, plain[i].second)) << plain[i].first;
    }
  }
  const auto bn = std::find_if(plain.begin(), plain.end(), [](const auto& kv) {
    return kv.first == "bn1.num_batches_tracked";
  });
  ASSERT_NE(bn, plain.end());
  EXPECT_EQ(bn->second.dtype(), torch::kLong);
  EXPECT_EQ(bn->second.item<int64_t>(), 7);
}

TEST_F(PretrainedTest, TorchvisionResNet18GivesPyTorchsLogits) {
  auto model = models::make_model("resnet18", 10);
  const auto load = load_pretrained(file("r18.pth"), *model);
  EXPECT_EQ(load.loaded, 122u);
  EXPECT_TRUE(load.reinitialised.empty());
  EXPECT_EQ(load.duplicates, 0u);
  expect_same_logits(*model, "r18.logits.pth");
}

TEST_F(PretrainedTest, LdamDrwCifarResNet32GivesPyTorchsLogits) {
  auto model = models::make_model("resnet32", 10);
  const auto load = load_pretrained(file("r32_ldam.pth"), *model);
  EXPECT_TRUE(load.reinitialised.empty());
  expect_same_logits(*model, "r32_ldam.logits.pth");
}

TEST_F(PretrainedTest, ReferenceCheckpointSkipsItsSecondNamesAndMapsItsFcHead) {
  auto model = models::make_model("resnet32", 10);
  ASSERT_EQ(model->classifier_name(), "linear");
  const auto load = load_pretrained(file("r32_reference.pth"), *model);
  EXPECT_GT(load.duplicates, 0u);
  EXPECT_TRUE(load.reinitialised.empty());
  expect_same_logits(*model, "r32_reference.logits.pth");
}

TEST_F(PretrainedTest, PredictOnImageFilesGivesTorchvisionsLogits) {
  PredictOptions opts;
  opts.model = "resnet18";
  opts.resize = opts.crop = 64;
  opts.precision = "fp32";
  opts.images = {file("image0.png"), file("image1.png"), file("image2.png")};
  opts.batch_size = 2;
  const auto expected =
      io::read_torch_file(file("r18.predict.pth")).toGenericDict().at("logits").toTensor();
  // The same through each way of saving the weights.
  for (const char* name : {"r18.pth", "r18_wrapped.pth", "r18_torchvision_reference.pth"}) {
    SCOPED_TRACE(name);
    opts.checkpoint = file(name);
    const auto p = predict(opts);
    ASSERT_EQ(p.failed(), 0);
    EXPECT_TRUE(torch::allclose(p.logits, expected, 1e-5, 1e-5))
        << (p.logits - expected).abs().max().item<double>();
    EXPECT_EQ(p.preprocessing.describe(),
              "Resize(64) → CenterCrop(64) → ToTensor() → Normalize(mean=[0.485, 0.456, 0.406], "
              "std=[0.229, 0.224, 0.225])");
    EXPECT_EQ(p.class_names.size(), 10u);
  }
  // The reference implementation's {'model_state': ...} CIFAR ResNet-32 on
  // 32×32 images, with CIFAR-10's mean/std.
  opts.checkpoint = file("r32_reference.pth");
  opts.model = "resnet32";
  opts.resize = opts.crop = 0;
  opts.images = {file("small0.png"), file("small1.png")};
  const auto p = predict(opts);
  const auto reference =
      io::read_torch_file(file("r32_reference.predict.pth")).toGenericDict().at("logits").toTensor();
  EXPECT_TRUE(torch::allclose(p.logits, reference, 1e-5, 1e-5))
      << (p.logits - reference).abs().max().item<double>();
  // Without --model a state_dict is a named error.
  opts.model.clear();
  EXPECT_NE(error_message<io::ConfigError>([&] { predict(opts); }).find("--model"),
            std::string::npos);
}

TEST_F(PretrainedTest, HeadOfAnotherClassCountIsLeftAsInitialised) {
  torch::manual_seed(5);
  const auto fresh = models::make_model("resnet18", 10);
  torch::manual_seed(5);
  auto model = models::make_model("resnet18", 10);  // initialised as `fresh` is
  const auto load = load_pretrained(file("r18_1000.pth"), *model);
  EXPECT_EQ(load.reinitialised, (std::vector<std::string>{"fc.weight", "fc.bias"}));
  const auto file_weights = io::read_state_dict(file("r18_1000.pth"));
  const auto params = model->named_parameters();
  EXPECT_TRUE(torch::equal(params["conv1.weight"], file_weights.front().second));
  EXPECT_TRUE(torch::equal(params["fc.weight"], fresh->named_parameters()["fc.weight"]));
}

TEST_F(PretrainedTest, CosineClassifierKeepsItsOwnHead) {
  auto model = models::make_model("resnet32", 10);
  model->use_cosine_classifier();
  const auto load = load_pretrained(file("r32_ldam.pth"), *model);
  EXPECT_FALSE(load.reinitialised.empty());
  const auto file_weights = io::read_state_dict(file("r32_ldam.pth"));
  EXPECT_TRUE(torch::equal(model->named_parameters()["conv1.weight"], file_weights.front().second));
}

TEST_F(PretrainedTest, WeightsOfAnotherArchitectureAreRefusedListingTheKeys) {
  auto r34 = models::make_model("resnet34", 10);
  const auto deeper =
      error_message<CheckpointError>([&] { load_pretrained(file("r18.pth"), *r34); });
  EXPECT_NE(deeper.find(file("r18.pth")), std::string::npos) << deeper;
  EXPECT_NE(deeper.find("missing"), std::string::npos) << deeper;
  EXPECT_NE(deeper.find("layer1.2.conv1.weight"), std::string::npos) << deeper;
  EXPECT_NE(deeper.find("resnet34"), std::string::npos) << deeper;

  auto r20 = models::make_model("resnet20", 10);
  const auto shallower =
      error_message<CheckpointError>([&] { load_pretrained(file("r32_ldam.pth"), *r20); });
  EXPECT_NE(shallower.find("not in resnet20: layer1.3."), std::string::npos) << shallower;

  auto r32 = models::make_model("resnet32", 10);
  const auto imagenet =
      error_message<CheckpointError>([&] { load_pretrained(file("r18.pth"), *r32); });
  EXPECT_NE(
      imagenet.find("other shapes: conv1.weight (64×3×7×7 in the file, 16×3×3×3 in resnet32)"),
      std::string::npos)
      << imagenet;
}

TEST_F(PretrainedTest, WholeModelPickleIsRefusedNamingItsClass) {
  const auto msg =
      error_message<std::runtime_error>([&] { io::read_state_dict(file("r18_whole_model.pth")); });
  EXPECT_NE(msg.find("<torchvision.models.resnet.ResNet object>"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.state_dict()"), std::string::npos) << msg;
}

TEST_F(PretrainedTest, NothingAPickleNamesIsRun) {
  const auto msg =
      error_message<std::runtime_error>([&] { io::read_torch_file(file("evil.pth")); });
  EXPECT_NE(msg.find("<posix.system object>"), std::string::npos) << msg;
  // Beside a state_dict the call is an inert string.
  const auto weights = io::read_state_dict(file("evil_nested.pth"));
  EXPECT_EQ(weights.front().first, "conv1.weight");
  const auto top = io::read_torch_file(file("evil_nested.pth")).toGenericDict();
  EXPECT_EQ(top.at("hook").toStringRef(), "<posix.system object>");
  EXPECT_FALSE(std::filesystem::exists(file("pwned")));
}

TEST_F(PretrainedTest, DamagedFilesAreRefusedNamingThem) {
  const auto whole = fsa::testing::read_text(file("r32_ldam.pth"));
  const auto legacy = fsa::testing::read_text(file("r18_legacy.pth"));
  struct Case {
    std::string name, bytes, expected;
  };
  const std::vector<Case> cases = {
      {"half_zip.pth", whole.substr(0, whole.size() / 2), "is not a readable torch.save file"},
      {"half_legacy.pth", legacy.substr(0, legacy.size() / 2), "truncated legacy file"},
      {"legacy_header.pth", legacy.substr(0, 200), "is not a readable torch.save file"},
      {"text.pth", "conv1.weight 1 2 3\n", "is not a torch.save file"},
      {"empty.pth", "", "is not a torch.save file"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto path = file(c.name);
    fsa::testing::write_bytes(path, std::vector<uint8_t>(c.bytes.begin(), c.bytes.end()));
    const auto msg = error_message<std::runtime_error>([&] { io::read_state_dict(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expected), std::string::npos) << msg;
  }
  const auto missing =
      error_message<std::runtime_error>([&] { io::read_state_dict(file("no_such.pth")); });
  EXPECT_NE(missing.find(file("no_such.pth")), std::string::npos) << missing;
}

TEST_F(PretrainedTest, ExportedImageNetResNetLoadsStrictlyIntoTorchvision) {
  TempDir run;
  auto model = models::make_model("resnet18", 10);
  ASSERT_EQ(load_pretrained(file("r18.pth"), *model).loaded, 122u);
  CheckpointInfo info;
  info.phase = "phase_i";
  info.arch = "resnet18";
  info.num_classes = 10;
  save_checkpoint(run / "c.pt", *model, nullptr, info);
  std::string out;
  ASSERT_EQ(fsa::testing::run_fsa(
                run, "export --state-dict --checkpoint " + run / "c.pt" + " --out " + run / "e.pth",
                &out),
            0)
      << out;
  // torchvision's own network, loaded strictly, gives the logits PyTorch saved.
  const std::string cmd =
      "/usr/bin/python3 -c \"import sys, torch, torchvision; m = torchvision.models.resnet18("
      "num_classes=10); m.load_state_dict(torch.load(sys.argv[1], weights_only=True), "
      "strict=True); m.eval(); d = torch.load(sys.argv[2]); "
      "assert torch.allclose(m(d['x']), d['logits'], atol=1e-5)\" " +
      run / "e.pth" + " " + file("r18.logits.pth");
  ASSERT_EQ(fsa::testing::run_command(cmd, run / "python.log"), 0)
      << fsa::testing::read_text(run / "python.log");
}

TEST_F(PretrainedTest, FsaTrainStartsFromTheFileAndRefusesABadOneBeforeWritingAnything) {
  TempDir run;
  fsa::testing::make_image_folder(run / "data", {30, 18, 10, 6}, 2);
  // A learning rate of 1e-9: after one epoch the weights are still the file's.
  std::ofstream(run / "tiny.yaml")
      << "random_seed: 1\nthreads: 1\ndataset: {name: ImageFolder-LT, root: " << run / "data"
      << ", kwargs: {im: 5}}\nmodel: {name: resnet20, pretrained: " << file("r20_4class.pth")
      << "}\ntrain:\n  num_epoch: 1\n  batch_size: 16\n"
      << "  optimizer: {name: SGD, kwargs: {lr: 1.0e-9, momentum: 0.9}}\n"
      << "  lr_scheduler: {name: constant}\nlog: {progress: quiet}\n";
  std::string out;
  ASSERT_EQ(fsa::testing::run_fsa(
                run, "train --config " + run / "tiny.yaml" + " --out " + run / "ok", &out),
            0)
      << out;
  EXPECT_NE(out.find("starting from the weights in '" + file("r20_4class.pth") + "'"),
            std::string::npos)
      << out;
  const auto given = io::read_state_dict(file("r20_4class.pth"));
  const auto trained = io::read_state_dict(run / "ok/checkpoints/last.pt");
  const auto find = [](const io::StateDict& sd, const std::string& name) {
    for (const auto& [k, v] : sd) {
      if (k == name) return v;
    }
    ADD_FAILURE() << name << " not found";
    return torch::Tensor();
  };
  for (const char* name : {"conv1.weight", "layer3.2.conv2.weight", "linear.weight"}) {
    EXPECT_TRUE(torch::allclose(find(trained, name), find(given, name), 0, 1e-6)) << name;
  }

  // `fsa export --state-dict` writes what PyTorch loads strictly, and what
  // model.pretrained takes back.
  ASSERT_EQ(fsa::testing::run_fsa(run,
                                  "export --state-dict --checkpoint " +
                                      run / "ok/checkpoints/last.pt" + " --out " + run / "r20.pth",
                                  &out),
            0)
      << out;
  const std::string strict =
      std::string("/usr/bin/python3 -B -c \"import sys, torch; sys.path.insert(0, '") +
      FSA_SOURCE_DIR +
      "/tests/io'); from torch_files import CifarResNet; CifarResNet(20, 4).load_state_dict("
      "torch.load(sys.argv[1], weights_only=True), strict=True)\" " +
      run / "r20.pth";
  ASSERT_EQ(fsa::testing::run_command(strict, run / "strict.log"), 0)
      << fsa::testing::read_text(run / "strict.log");
  const auto exported = io::read_state_dict(run / "r20.pth");
  EXPECT_TRUE(torch::equal(find(exported, "conv1.weight"), find(trained, "conv1.weight")));
  auto again = models::make_model("resnet20", 4);
  EXPECT_EQ(load_pretrained(run / "r20.pth", *again).loaded, trained.size());

  const std::string base = "train --config " + run / "tiny.yaml";
  EXPECT_NE(
      fsa::testing::run_fsa(
          run, base + " --set model.pretrained=" + run / "none.pth" + " --out " + run / "missing",
          &out),
      0);
  EXPECT_NE(out.find("model.pretrained '" + run / "none.pth" + "' does not exist"),
            std::string::npos)
      << out;
  EXPECT_FALSE(std::filesystem::exists(run / "missing"));
  EXPECT_NE(fsa::testing::run_fsa(
                run, base + " --set model.name=resnet32 --out " + run / "mismatch", &out),
            0);
  EXPECT_NE(out.find("do not fit resnet32"), std::string::npos) << out;
  // Only the log of the failed command is in its folder (the next try may use it).
  for (const auto& entry : std::filesystem::directory_iterator(run / "mismatch")) {
    EXPECT_EQ(entry.path().filename(), "log.txt");
  }
}

}  // namespace
}  // namespace fsa::train
