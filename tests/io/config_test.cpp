#include "fsa/io/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "test_util.h"

namespace fsa::io {
namespace {

std::string error_of(const std::string& yaml, const std::string& phase = "phase_i") {
  try {
    parse_config(phase_document(YAML::Load(yaml), phase), "cfg.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, ReadsTheReferenceLayout) {
  const auto c = parse_config(YAML::Load(R"(
random_seed: 1314
dataset: {name: Cifar10-LT, kwargs: {im: 50}}
model: {name: resnet32, kwargs: {pretrained: false}}
phase: train
train:
  num_epoch: 40
  batch_size: 128
  loss: SoftmaxCrossEntropy
  optimizer: {name: SGD, kwargs: {lr: 0.0005, momentum: 0.9}}
  lr_scheduler: {name: StepLR, kwargs: {step_size: 150, gamma: 1}}
  gradient_clip: null
test: {batch_size: 128, loss: SoftmaxCrossEntropy}
finetune: {Nt: 16, Na: 3, Nf: 3, ts: 0.8, tg: 0.2}
checkpoint: {path: checkpoints/, load_checkpoint: a.pt, save_checkpoint_interval: 5}
log: {path: log/, log_interval: 200}
tensorboard: {path: run_summary/}
feature: {path: feature/, cam_layers: 'layer3'}
)"),
                              "ref.yaml");
  EXPECT_EQ(*c.random_seed, 1314u);
  EXPECT_EQ(c.dataset.imbalance_factor, 50);
  EXPECT_EQ(c.train.optimizer.lr, 0.0005);
  EXPECT_EQ(c.train.lr_scheduler.name, "StepLR");
  EXPECT_EQ(c.train.lr_scheduler.step_size, 150);
  EXPECT_FALSE(c.train.gradient_clip.has_value());
  EXPECT_EQ(c.checkpoint.load_checkpoint, "a.pt");
  EXPECT_EQ(c.feature.cam_layer, "layer3");
  EXPECT_EQ(c.finetune.Na, 3);
}

TEST(Config, UnknownKeyAndWrongTypeNameKeyAndFile) {
  auto e = error_of("train: {num_epochs: 3}");
  EXPECT_NE(e.find("cfg.yaml"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key 'train.num_epochs'"), std::string::npos) << e;
  e = error_of("train: {batch_size: many}");
  EXPECT_NE(e.find("'train.batch_size'"), std::string::npos) << e;
  EXPECT_NE(e.find("many"), std::string::npos) << e;
  e = error_of("dataset: {kwargs: {im: -10}}");
  EXPECT_NE(e.find("dataset.kwargs.im"), std::string::npos) << e;
  e = error_of("finetune: {ts: 0.1, tg: 0.2}");
  EXPECT_NE(e.find("finetune.ts"), std::string::npos) << e;
  e = error_of("train: {optimizer: {name: Lion}}");
  EXPECT_NE(e.find("train.optimizer.name"), std::string::npos) << e;
  e = error_of("train: {optimizer: {name: SGD, kwargs: {betas: [0.9, 0.99]}}}");
  EXPECT_NE(e.find("train.optimizer.kwargs.betas"), std::string::npos) << e;
  e = error_of("feature: {cam_layers: 'layer2, layer3'}");
  EXPECT_NE(e.find("feature.cam_layers"), std::string::npos) << e;
  e = error_of("train: 5");
  EXPECT_NE(e.find("train"), std::string::npos) << e;
  e = error_of("precision: fp16");
  EXPECT_NE(e.find("'precision'"), std::string::npos) << e;
  EXPECT_NE(e.find("fp32 or bf16-mixed, got 'fp16'"), std::string::npos) << e;
  e = error_of("memory_format: nhwc");
  EXPECT_NE(e.find("'memory_format'"), std::string::npos) << e;
  EXPECT_NE(e.find("contiguous or channels_last, got 'nhwc'"), std::string::npos) << e;
  EXPECT_EQ(error_of("train: {num_epoch: 3}"), "");
}

TEST(Config, PipelineMergesTopLevelUnderEachPhaseAndOverridesApply) {
  auto doc = YAML::Load(R"(
random_seed: 3
dataset: {name: CIFAR-10-LT, root: /data, kwargs: {im: 100}}
train: {batch_size: 64}
phase_i: {train: {num_epoch: 200}}
phase_iii: {train: {num_epoch: 40, optimizer: {name: SGD, kwargs: {lr: 0.0005}}}}
)");
  ASSERT_TRUE(is_pipeline(doc));
  apply_overrides(
      doc, {"phase_i.train.num_epoch=2", "dataset.kwargs.im=10", "phase_ii.feature.store=true"});
  const auto p = parse_pipeline(doc, "p.yaml");
  EXPECT_EQ(p.phase_i.train.num_epoch, 2);
  EXPECT_EQ(p.phase_i.train.batch_size, 64);
  EXPECT_EQ(p.phase_iii.train.num_epoch, 40);
  EXPECT_EQ(p.phase_iii.train.optimizer.lr, 0.0005);
  EXPECT_EQ(p.phase_iii.dataset.imbalance_factor, 10);
  EXPECT_TRUE(p.phase_ii.feature.store);
  EXPECT_FALSE(p.phase_i.feature.store);
  EXPECT_THROW(apply_overrides(doc, {"no_equals_sign"}), ConfigError);
  EXPECT_THROW(apply_overrides(doc, {"random_seed.x=1"}), ConfigError);

  // A top-level override also replaces the key where a phase section sets it,
  // and leaves other keys of that section alone.
  apply_overrides(doc, {"train.num_epoch=1", "train.optimizer.kwargs.lr=0.3"});
  const auto q = parse_pipeline(doc, "p.yaml");
  EXPECT_EQ(q.phase_i.train.num_epoch, 1);
  EXPECT_EQ(q.phase_iii.train.num_epoch, 1);
  EXPECT_EQ(q.phase_iii.train.optimizer.lr, 0.3);
  EXPECT_EQ(q.phase_i.train.optimizer.lr, 0.3);
  EXPECT_EQ(q.phase_iii.train.optimizer.name, "SGD");
  EXPECT_FALSE(doc["phase_ii"]["train"].IsDefined());  // not added where the phase had no key
  // Replacing a whole section by null would silently restore its defaults.
  EXPECT_THROW(apply_overrides(doc, {"train=null"}), ConfigError);
  EXPECT_THROW(apply_overrides(doc, {"train.optimizer=null"}), ConfigError);  // phase_iii's
  EXPECT_NO_THROW(apply_overrides(doc, {"train.gradient_clip=null"}));
}

TEST(Config, ARepeatedKeyInAFileIsAnError) {
  fsa::testing::TempDir dir;
  std::ofstream(dir / "twice.yaml") << "random_seed: 1\ntrain:\n  num_epoch: 3\n  num_epoch: 5\n";
  try {
    load_yaml_file(dir / "twice.yaml");
    FAIL();
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("twice.yaml"), std::string::npos) << m;
    EXPECT_NE(m.find("'train.num_epoch' is given twice (again at line 4)"), std::string::npos) << m;
  }
}

TEST(Config, EmptyOverrideIsAnEmptyStringNotTheDefault) {
  auto doc = YAML::Load("train: {num_epoch: 3}");
  apply_overrides(doc, {"train.num_epoch="});
  try {
    parse_config(doc, "a.yaml");
    FAIL() << "an empty num_epoch was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.num_epoch"), std::string::npos) << e.what();
  }
  doc = YAML::Load("model: {name: resnet20}");
  apply_overrides(doc, {"model="});
  EXPECT_THROW(parse_config(doc, "a.yaml"), ConfigError);  // a mapping was expected
}

TEST(Config, ResolvedYamlReadsBackToTheSameConfig) {
  auto c = parse_config(YAML::Load("precision: bf16-mixed\nmemory_format: channels_last\n"
                                   "train: {num_epoch: 7, optimizer: {name: AdamW, kwargs: "
                                   "{lr: 0.00001, eps: 6.0e-7, weight_decay: 0.01}}}"),
                        "a.yaml");
  EXPECT_TRUE(c.bf16_mixed());
  EXPECT_TRUE(c.channels_last());
  const auto again = parse_config(YAML::Load(to_yaml(c)), "resolved.yaml");
  EXPECT_EQ(to_yaml(again), to_yaml(c));
  EXPECT_EQ(again.train.optimizer.eps, 6.0e-7);
  EXPECT_EQ(again.train.num_epoch, 7);
  EXPECT_TRUE(again.bf16_mixed());
  EXPECT_TRUE(again.channels_last());
  const auto fp32 =
      parse_config(YAML::Load("precision: fp32\nmemory_format: contiguous"), "b.yaml");
  EXPECT_FALSE(fp32.bf16_mixed());
  EXPECT_FALSE(fp32.channels_last());
  EXPECT_FALSE(fp32.precision_auto);
}

// The kernel's view of the processor, read independently of the compiler's
// __builtin_cpu_supports that native_bf16_cpu() uses.
bool cpuinfo_has_avx512_bf16() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) == 0) return (line + " ").find(" avx512_bf16 ") != std::string::npos;
  }
  return false;
}

TEST(Config, AutoPrecisionIsBf16MixedWithChannelsLastExactlyOnACpuWithNativeBf16) {
#if defined(__x86_64__)
  EXPECT_EQ(native_bf16_cpu(), cpuinfo_has_avx512_bf16());
#endif
  const bool native = native_bf16_cpu();
  for (const auto* yaml : {"{}", "precision: auto\nmemory_format: auto", "device: cpu"}) {
    const auto c = parse_config(YAML::Load(yaml), "a.yaml");
    EXPECT_EQ(c.precision, native ? "bf16-mixed" : "fp32") << yaml;
    EXPECT_EQ(c.memory_format, native ? "channels_last" : "contiguous") << yaml;
    EXPECT_TRUE(c.precision_auto && c.memory_format_auto) << yaml;
    // config.yaml records what ran, so a resume or `fsa test` elsewhere repeats it.
    const auto again = parse_config(YAML::Load(to_yaml(c)), "resolved.yaml");
    EXPECT_EQ(again.precision, c.precision);
    EXPECT_FALSE(again.precision_auto || again.memory_format_auto);
  }
  const auto cuda = parse_config(YAML::Load("device: cuda"), "a.yaml");  // not yet measured there
  EXPECT_EQ(cuda.precision, "fp32");
  EXPECT_EQ(cuda.memory_format, "contiguous");
  // A precision set by hand is kept; auto memory format follows it on the CPU.
  const auto fp32 = parse_config(YAML::Load("precision: fp32"), "a.yaml");
  EXPECT_EQ(fp32.precision, "fp32");
  EXPECT_EQ(fp32.memory_format, "contiguous");
  const auto bf16 = parse_config(YAML::Load("precision: bf16-mixed"), "a.yaml");
  EXPECT_EQ(bf16.memory_format, "channels_last");
  const auto nchw = parse_config(YAML::Load("memory_format: contiguous"), "a.yaml");
  EXPECT_EQ(nchw.precision, native ? "bf16-mixed" : "fp32");
  EXPECT_EQ(nchw.memory_format, "contiguous");
  const auto e = error_of("memory_format: nhwc");
  EXPECT_NE(e.find("'memory_format'"), std::string::npos) << e;
  EXPECT_NE(e.find("auto, contiguous or channels_last"), std::string::npos) << e;
}

// A config in the public reference implementation's layout, written here with
// every key of it that fsa reads elsewhere or not at all.
TEST(Config, TheReferenceImplementationsKeysAreTakenWithOneNoticeEach) {
  const auto c = parse_config(YAML::Load(R"(phase: train
dataset: {name: ImageNet_LT, root: /data/imagenet}
model: {name: resnet10, kwargs: {pretrained: false}}
train:
  loss: SoftmaxCrossEntropy
  lr: 0.0005
  batch_size: 128
test: {loss: SoftmaxCrossEntropy}
checkpoint: {path: ./checkpoints}
log: {path: ./logs}
tensorboard: {path: ./tb}
feature: {path: ./features}
finetune: {Nt: 4, Na: 15, Nf: 15, cam_layer: layer4}
vis: {path: ./vis, num: 10}
)"),
                              "reference.yaml");
  // What the keys mean is kept where fsa has it.
  EXPECT_DOUBLE_EQ(c.train.optimizer.lr, 0.0005);
  EXPECT_EQ(c.feature.cam_layer, "layer4");
  EXPECT_EQ(c.dataset.train_list, "ImageNet_LT_train.txt");  // the released names
  EXPECT_EQ(c.dataset.val_list, "ImageNet_LT_val.txt");
  EXPECT_EQ(c.dataset.test_list, "ImageNet_LT_test.txt");
  const std::vector<std::string> keys{
      "'phase'",       "'tensorboard'",     "'vis'",      "'model.kwargs.pretrained'",
      "'train.lr'",    "'checkpoint.path'", "'log.path'", "'finetune.cam_layer'",
      "'feature.path'"};
  ASSERT_EQ(c.notices.size(), keys.size()) << fmt::format("{}", fmt::join(c.notices, "\n"));
  for (const auto& key : keys) {
    const auto n = std::count_if(c.notices.begin(), c.notices.end(),
                                 [&](const std::string& s) { return s.rfind(key, 0) == 0; });
    EXPECT_EQ(n, 1) << key;
  }
  // fsa's own keys win over the reference's, and the notice says so.
  const auto both =
      parse_config(YAML::Load("train: {lr: 0.5, optimizer: {kwargs: {lr: 0.01}}}\n"
                              "feature: {cam_layers: layer2}\nfinetune: {cam_layer: layer4}"),
                   "both.yaml");
  EXPECT_DOUBLE_EQ(both.train.optimizer.lr, 0.01);
  EXPECT_EQ(both.feature.cam_layer, "layer2");
  EXPECT_NE(fmt::format("{}", fmt::join(both.notices, "\n")).find("feature.cam_layers is given"),
            std::string::npos);
  // fsa's own configs raise none.
  EXPECT_TRUE(parse_config(YAML::Load("{}"), "a.yaml").notices.empty());
  // The reference's sample dataset is named, with the nearest of fsa's.
  const auto e = error_of("dataset: {name: example}");
  EXPECT_NE(e.find("ImageFolder-LT"), std::string::npos) << e;
}

TEST(Config, ListFileDatasets) {
  const auto c = parse_config(YAML::Load(R"(
dataset:
  name: ImageNet-LT
  root: /data/imagenet
  train_list: ImageNet_LT_train.txt
  test_list: ImageNet_LT_test.txt
  transform: {crop_size: 112, resize_size: 128}
)"),
                              "in.yaml");
  EXPECT_TRUE(is_list_dataset(c.dataset.name));
  EXPECT_EQ(c.dataset.train_list, "ImageNet_LT_train.txt");
  EXPECT_EQ(c.dataset.val_list, "");
  EXPECT_EQ(c.dataset.num_classes, 1000);  // ImageNet-LT's default
  EXPECT_EQ(c.dataset.transform.crop_size, 112);
  EXPECT_EQ(c.dataset.transform.resize_size, 128);
  EXPECT_EQ(c.dataset.transform.color_jitter, 0.4);
  const auto again = parse_config(YAML::Load(to_yaml(c)), "resolved.yaml");
  EXPECT_EQ(to_yaml(again), to_yaml(c));
  EXPECT_EQ(again.dataset.transform.crop_size, 112);
  EXPECT_EQ(
      parse_config(YAML::Load("dataset: {name: Places_LT, train_list: a, test_list: b}"), "p.yaml")
          .dataset.num_classes,
      365);
  EXPECT_EQ(parse_config(YAML::Load("dataset: {name: iNaturalist-LT, train_list: a, "
                                    "test_list: b}"),
                         "i.yaml")
                .dataset.num_classes,
            8142);
  EXPECT_EQ(parse_config(YAML::Load("dataset: {name: ListFile-LT, train_list: a, test_list: b, "
                                    "num_classes: 7}"),
                         "l.yaml")
                .dataset.num_classes,
            7);
  EXPECT_FALSE(is_list_dataset("CIFAR-10-LT"));
  // Strict: required lists, list keys only on list datasets, bad values.
  auto e = error_of("dataset: {name: ImageNet-LT, test_list: t.txt}");
  EXPECT_NE(e.find("dataset.train_list"), std::string::npos) << e;
  e = error_of("dataset: {name: Places-LT, train_list: t.txt}");
  EXPECT_NE(e.find("dataset.test_list"), std::string::npos) << e;
  e = error_of("dataset: {name: CIFAR-10-LT, train_list: t.txt}");
  EXPECT_NE(e.find("dataset.train_list"), std::string::npos) << e;
  e = error_of("dataset: {name: CIFAR-10-LT, num_classes: 10}");
  EXPECT_NE(e.find("dataset.num_classes"), std::string::npos) << e;
  e = error_of("dataset: {name: ListFile-LT, train_list: a, test_list: b, num_classes: -1}");
  EXPECT_NE(e.find("dataset.num_classes"), std::string::npos) << e;
  e = error_of(
      "dataset: {name: ListFile-LT, train_list: a, test_list: b, "
      "transform: {crop_size: 224, resize_size: 200}}");
  EXPECT_NE(e.find("dataset.transform.resize_size"), std::string::npos) << e;
  e = error_of(
      "dataset: {name: ListFile-LT, train_list: a, test_list: b, "
      "transform: {crop: 224}}");
  EXPECT_NE(e.find("unknown key 'dataset.transform.crop'"), std::string::npos) << e;
  // CIFAR configs resolve as before, without the list-file keys.
  EXPECT_EQ(to_yaml(parse_config(YAML::Load("{}"), "c.yaml")).find("train_list"),
            std::string::npos);
}

TEST(Config, MissingAndMalformedFilesNameTheFile) {
  fsa::testing::TempDir dir;
  try {
    load_yaml_file(dir / "missing.yaml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.yaml"), std::string::npos);
  }
  fsa::testing::write_bytes(dir / "bad.yaml", {'a', ':', ' ', '[', '1', '\n'});
  try {
    load_yaml_file(dir / "bad.yaml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.yaml"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line"), std::string::npos) << e.what();
  }
}

/// load_yaml_file's ConfigError message for a file holding `text`.
std::string file_error(const fsa::testing::TempDir& dir, const std::string& text) {
  const auto path = dir / "aliases.yaml";
  std::ofstream(path) << text;
  try {
    load_yaml_file(path);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, SelfReferringAliasesAliasBombsAndComplexKeysAreNamedErrors) {
  fsa::testing::TempDir dir;
  // An alias inside its own anchor: unbounded recursion before, a named error now.
  auto e = file_error(dir, "random_seed: &a [*a]\n");
  EXPECT_NE(e.find("aliases.yaml"), std::string::npos) << e;
  EXPECT_NE(e.find("refers to its own anchor"), std::string::npos) << e;
  e = file_error(dir, "model: &m\n  name: *m\n");
  EXPECT_NE(e.find("key 'model.name"), std::string::npos) << e;
  // Ten levels of ten aliases each: 10^10 values if expanded.
  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 10; ++i) {
    bomb += fmt::format("a{0}: &a{0} [", i);
    for (int j = 0; j < 10; ++j) bomb += fmt::format("{}*a{}", j ? ", " : "", i - 1);
    bomb += "]\n";
  }
  e = file_error(dir, bomb);
  EXPECT_NE(e.find("at most 100000 values"), std::string::npos) << e;
  e = file_error(dir, "? [a, b]\n: 1\n");
  EXPECT_NE(e.find("line 1: expected a plain key"), std::string::npos) << e;
  // Ordinary anchors and aliases still work.
  std::ofstream(dir / "ok.yaml") << "x: &v 3\ny: *v\n";
  const auto ok = load_yaml_file(dir / "ok.yaml");
  EXPECT_EQ(ok["y"].as<int>(), 3);
  // An override is checked the same way.
  YAML::Node doc(YAML::NodeType::Map);
  try {
    apply_overrides(doc, {"random_seed=&a [*a]"});
    FAIL() << "no error for a self-referring override";
  } catch (const ConfigError& err) {
    EXPECT_NE(std::string(err.what()).find("override 'random_seed=&a [*a]'"), std::string::npos)
        << err.what();
  }
}

TEST(Config, LossesSamplersAndEvaluationSettings) {
  const auto c = parse_config(YAML::Load(R"(
model: {name: resnet32, classifier: cosine}
train:
  num_epoch: 200
  loss: {name: ldam, max_margin: 0.4, scale: 20, weighting: drw, beta: 0.999, drw_epoch: 160}
  sampler: square_root
test: {interval: 10, logit_adjust_tau: 1.5}
)"),
                              "ldam.yaml");
  EXPECT_EQ(c.model.classifier, "cosine");
  EXPECT_EQ(c.train.loss.name, "ldam");
  EXPECT_EQ(c.train.loss.max_margin, 0.4);
  EXPECT_EQ(c.train.loss.scale, 20);
  EXPECT_EQ(c.train.loss.weighting, "drw");
  EXPECT_EQ(c.train.loss.beta, 0.999);
  EXPECT_EQ(c.train.loss.drw_epoch, 160);
  EXPECT_EQ(c.train.sampler.name, "square_root");
  EXPECT_EQ(c.test.interval, 10);
  EXPECT_EQ(c.test.logit_adjust_tau, 1.5);
  const auto again = parse_config(YAML::Load(to_yaml(c)), "resolved.yaml");
  EXPECT_EQ(to_yaml(again), to_yaml(c));
  // The reference's string form, and its name for cross-entropy.
  const auto plain = parse_config(YAML::Load("train: {loss: SoftmaxCrossEntropy}"), "a.yaml");
  EXPECT_EQ(plain.train.loss.name, "cross_entropy");
  EXPECT_EQ(parse_config(YAML::Load("train: {loss: focal}"), "a.yaml").train.loss.gamma, 1.0);

  EXPECT_NE(error_of("train: {loss: hinge}").find("'train.loss': expected cross_entropy"),
            std::string::npos);
  // A key the named loss does not use is refused, not ignored.
  EXPECT_NE(error_of("train: {loss: {name: ldam, gamma: 2}}").find("'train.loss.gamma'"),
            std::string::npos);
  EXPECT_NE(error_of("train: {loss: {name: focal, beta: 0.9}}").find("weighting is none"),
            std::string::npos);
  EXPECT_NE(
      error_of("train: {loss: {name: focal, weighting: class_balanced, beta: 1}}").find("[0, 1)"),
      std::string::npos);
  EXPECT_NE(error_of("train: {num_epoch: 100, loss: {name: ldam, weighting: drw}}")
                .find("'train.loss.drw_epoch'"),
            std::string::npos);
  EXPECT_NE(error_of("train: {sampler: balanced}").find("'train.sampler'"), std::string::npos);
  EXPECT_NE(error_of("test: {interval: 0}").find("'test.interval'"), std::string::npos);
  EXPECT_NE(error_of("model: {classifier: normed}").find("'model.classifier'"), std::string::npos);
}

TEST(Config, ValidationSplitAndTauSearch) {
  const auto c = parse_config(YAML::Load(R"(
dataset: {name: CIFAR-10-LT, val_fraction: 0.1}
decoupling: {method: tau_norm, tau: search}
)"),
                              "val.yaml");
  EXPECT_EQ(c.dataset.val_fraction, 0.1);
  EXPECT_TRUE(c.decoupling.tau_search);
  const auto again = parse_config(YAML::Load(to_yaml(c)), "resolved.yaml");
  EXPECT_TRUE(again.decoupling.tau_search);
  EXPECT_EQ(again.dataset.val_fraction, 0.1);
  EXPECT_FALSE(parse_config(YAML::Load("decoupling: {method: tau_norm, tau: 0.5}"), "a.yaml")
                   .decoupling.tau_search);

  EXPECT_NE(error_of("dataset: {val_fraction: 0.7}")
                .find("'dataset.val_fraction': expected a "
                      "fraction in [0, 0.5]"),
            std::string::npos);
  EXPECT_NE(error_of("dataset: {val_fraction: -0.1}").find("'dataset.val_fraction'"),
            std::string::npos);
  EXPECT_NE(error_of("dataset: {name: ListFile-LT, train_list: a, test_list: b, val_list: c, "
                     "val_fraction: 0.1}")
                .find("give one of the two"),
            std::string::npos);
  EXPECT_NE(error_of("decoupling: {method: tau_norm, tau: best}").find("or 'search', got 'best'"),
            std::string::npos);
  EXPECT_NE(error_of("decoupling: {method: tau_norm, tau: -1}").find("'decoupling.tau'"),
            std::string::npos);
}

TEST(Config, OptimiserSettingsLibTorchWouldRefuseLaterAreRefusedFirst) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"train: {optimizer: {name: Adam, kwargs: {betas: [0.9, 1.5]}}}",
       "'train.optimizer.kwargs.betas': expected two numbers in [0, 1), got [0.9, 1.5]"},
      {"train: {optimizer: {name: Adam, kwargs: {eps: -1}}}", "'train.optimizer.kwargs.eps'"},
      {"train: {optimizer: {name: SGD, kwargs: {nesterov: true}}}",
       "'train.optimizer.kwargs.nesterov': expected false, or a momentum > 0"},
      {"train: {optimizer: {name: SGD, kwargs: {lr: 1e39}}}", "'train.optimizer.kwargs.lr'"},
      {"train: {optimizer: {name: SGD, kwargs: {weight_decay: 1e300}}}",
       "'train.optimizer.kwargs.weight_decay'"},
      {"train: {optimizer: {name: SGD, kwargs: {momentum: 5}}}",
       "'train.optimizer.kwargs.momentum': expected a momentum in [0, 1)"},
      {"threads: 2000", "'threads': expected 0 (every core) or at most 1024 threads, got 2000"},
      {"dataset: {name: ListFile-LT, train_list: a, test_list: b, num_workers: 100000}",
       "'dataset.num_workers': expected at most 1024"},
  };
  for (const auto& [yaml, expected] : cases) {
    EXPECT_NE(error_of(yaml).find(expected), std::string::npos) << yaml << "\n" << error_of(yaml);
  }
  EXPECT_EQ(error_of("train: {optimizer: {name: SGD, kwargs: {momentum: 0.9, nesterov: true}}}"),
            "");
  EXPECT_NE(error_of("finetune: {head_classes: [0, 2, 0]}").find("each class once, got 0 twice"),
            std::string::npos);
}

TEST(Config, ListFileTrainingCrop) {
  const auto c = parse_config(YAML::Load(R"(
dataset:
  name: ListFile-LT
  train_list: a.txt
  test_list: b.txt
  transform: {crop_size: 32, resize_size: 32, train_crop: random_crop, padding: 4,
              scale: [0.35, 1.0], ratio: [0.5, 2.0]}
)"),
                              "lf.yaml");
  EXPECT_EQ(c.dataset.transform.train_crop, "random_crop");
  EXPECT_EQ(c.dataset.transform.padding, 4);
  EXPECT_EQ(c.dataset.transform.scale, (std::vector<double>{0.35, 1.0}));
  EXPECT_EQ(c.dataset.transform.ratio, (std::vector<double>{0.5, 2.0}));
  EXPECT_EQ(to_yaml(parse_config(YAML::Load(to_yaml(c)), "r.yaml")), to_yaml(c));
  const std::string lf = "dataset: {name: ListFile-LT, train_list: a, test_list: b, transform: ";
  EXPECT_NE(error_of(lf + "{train_crop: pad}}").find("'dataset.transform.train_crop'"),
            std::string::npos);
  EXPECT_NE(error_of(lf + "{scale: [0.5, 0.2]}}").find("'dataset.transform.scale'"),
            std::string::npos);
  EXPECT_NE(error_of(lf + "{scale: [0, 1]}}").find("0 < min"), std::string::npos);
  EXPECT_NE(error_of(lf + "{padding: -1}}").find("'dataset.transform.padding'"), std::string::npos);
}

TEST(Config, EveryMethodRecipeIsInTheReadmesMethodList) {
  // configs/methods/<dataset>_lt_im100_<method>.yaml: the README's Methods
  // table names each <method> as "_<method>.yaml", and each recipe exists for
  // both CIFAR-10-LT and CIFAR-100-LT.
  const auto readme = testing::read_text(FSA_SOURCE_DIR "/README.md");
  const auto methods = readme.substr(readme.find("## Methods"));
  std::set<std::string> c10, c100;
  for (const auto& entry : std::filesystem::directory_iterator(FSA_SOURCE_DIR "/configs/methods")) {
    const auto name = entry.path().filename().string();
    const auto cut = name.find("_lt_im100_");
    ASSERT_NE(cut, std::string::npos) << name;
    const auto method = name.substr(cut + 10);  // "<method>.yaml"
    (name.rfind("cifar100", 0) == 0 ? c100 : c10).insert(method);
    EXPECT_NE(methods.find("_" + method + "`"), std::string::npos)
        << method << " is not in README.md's Methods table";
  }
  EXPECT_EQ(c10, c100);
  EXPECT_GE(c10.size(), 12u);
}

TEST(Config, ShippedConfigsParse) {
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(FSA_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    auto doc = load_yaml_file(entry.path().string());
    EXPECT_NO_THROW(parse_pipeline(doc, entry.path().string())) << entry.path();
  }
}

}  // namespace
}  // namespace fsa::io
