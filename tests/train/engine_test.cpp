// The training loop on a scripted method: evaluation at test.interval, the
// best epoch among evaluated ones, checkpoints, history and divergence.
#include "fsa/train/engine.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "fsa/train/phases.h"
#include "fsa/train/schedule.h"
#include "test_util.h"

namespace fsa::train {
namespace {

namespace fs = std::filesystem;

/// `batches` batches (default two) of four random images per epoch;
/// evaluate() answers the scripted top-1 of each evaluation of a split in
/// turn. With `seekable`, it can continue an epoch from a mid-epoch
/// checkpoint; `kill_at_call` > 0 makes that call of next_step throw, as a
/// kill would stop the run there.
class ScriptedMethod : public TrainingMethod {
 public:
  ScriptedMethod(models::Backbone& model, std::vector<double> top1,
                 std::vector<double> val_top1 = {})
      : model_(model), top1_(std::move(top1)), val_top1_(std::move(val_top1)) {}
  int64_t batches_per_epoch() const override { return batches_; }
  void start_epoch(int64_t epoch, at::Generator gen) override {
    gen_ = gen;
    left_ = batches_;
    model_.train();
    epochs_.push_back(epoch);
  }
  std::optional<TrainingStep> next_step() override {
    if (++calls_ == kill_at_call_) throw std::runtime_error("killed");
    if (left_-- == 0) return std::nullopt;
    TrainingStep s;
    s.labels = torch::randint(0, 2, {4}, gen_, torch::kInt64);
    s.logits = model_.forward(torch::randn({4, 3, 32, 32}, gen_));
    s.loss = poison_ ? s.logits.sum() * std::numeric_limits<float>::quiet_NaN()
                     : torch::nn::functional::cross_entropy(s.logits, s.labels);
    s.images = 4;
    return s;
  }
  std::optional<std::string> position() const override {
    if (!seekable_) return std::nullopt;
    return std::string("scripted");
  }
  void seek(int64_t steps, const std::string& state) override {
    EXPECT_EQ(state, "scripted");  // what position() said, handed back
    seeked_ = steps;
    left_ = batches_ - static_cast<int>(steps);
  }
  eval::Report evaluate(Split split) override {
    eval::Report r;
    r.top1 = split == Split::kTest ? top1_.at(evaluated_++) : val_top1_.at(validated_++);
    r.per_class = {r.top1, r.top1};
    r.head = r.top1;
    r.loss = split == Split::kValidation && val_loss_nan_ ? std::nan("") : 1.0;
    return r;
  }
  std::vector<int64_t> epochs_;
  int evaluated_ = 0, validated_ = 0;
  bool val_loss_nan_ = false;
  bool poison_ = false;
  int batches_ = 2;
  bool seekable_ = false;
  int kill_at_call_ = 0;
  int64_t seeked_ = -1;

 private:
  models::Backbone& model_;
  std::vector<double> top1_, val_top1_;
  at::Generator gen_;
  int left_ = 0;
  int calls_ = 0;
};

TEST(Engine, EvaluatedEpochs) {
  std::vector<int64_t> evaluated;
  for (int64_t e = 0; e < 7; ++e) {
    if (is_evaluated_epoch(e, 7, 3)) evaluated.push_back(e + 1);
  }
  EXPECT_EQ(evaluated, (std::vector<int64_t>{3, 6, 7}));  // every third, and the last
  EXPECT_TRUE(is_evaluated_epoch(0, 5, 1));
}

TEST(Engine, IntervalHistoryBestAndCheckpoints) {
  testing::TempDir dir;
  torch::manual_seed(0);
  auto model = models::make_model("resnet20", 2);
  io::Config cfg;
  cfg.train.num_epoch = 7;
  cfg.test.interval = 3;
  cfg.train.lr_scheduler.name = "constant";
  cfg.checkpoint.save_checkpoint_interval = 0;
  cfg.log.progress = "quiet";
  auto optimizer = make_optimizer(cfg.train.optimizer, model->parameters());
  ScriptedMethod method(*model, {0.4, 0.7, 0.5});  // evaluations after epochs 3, 6, 7
  TrainingLoop loop(cfg, "phase_i", 1, 42, dir.path(), *model, *optimizer, model->parameters());
  const auto r = fit(loop, method);
  EXPECT_EQ(method.epochs_, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(method.evaluated_, 3);
  EXPECT_DOUBLE_EQ(r.last.top1, 0.5);  // the final epoch, not the best
  EXPECT_DOUBLE_EQ(r.best_top1, 0.7);
  EXPECT_EQ(r.best_epoch, 6);
  EXPECT_EQ(r.selected_on, "test");
  ASSERT_EQ(r.history.size(), 7u);
  EXPECT_FALSE(r.history[0].contains("test_acc"));
  EXPECT_DOUBLE_EQ(r.history[2]["test_acc"].get<double>(), 0.4);
  EXPECT_TRUE(r.history[5]["test_tail"].is_null());
  EXPECT_EQ(r.history[6]["epoch"].get<int64_t>(), 7);
  EXPECT_TRUE(fs::exists(r.last_checkpoint));
  const auto best = read_checkpoint_info(r.best_checkpoint);
  EXPECT_EQ(best.epoch, 6);
  EXPECT_EQ(read_checkpoint_info(r.last_checkpoint).epoch, 7);

  // Resuming after epoch 6 runs only the last epoch and keeps the best.
  auto resumed = models::make_model("resnet20", 2);
  auto opt2 = make_optimizer(cfg.train.optimizer, resumed->parameters());
  ScriptedMethod rest(*resumed, {0.6});
  TrainingLoop again = loop;
  again.model = resumed.get();
  again.optimizer = opt2.get();
  again.trained = resumed->parameters();
  again.resumed = load_checkpoint(r.best_checkpoint, *resumed, opt2.get());
  const auto r2 = fit(again, rest);
  EXPECT_EQ(rest.epochs_, (std::vector<int64_t>{6}));
  EXPECT_DOUBLE_EQ(r2.best_top1, 0.7);
  EXPECT_EQ(r2.history.size(), 7u);
}

TEST(Engine, TheValidationSplitChoosesTheBestEpoch) {
  testing::TempDir dir;
  torch::manual_seed(0);
  auto model = models::make_model("resnet20", 2);
  io::Config cfg;
  cfg.train.num_epoch = 3;
  cfg.train.lr_scheduler.name = "constant";
  cfg.checkpoint.save_checkpoint_interval = 0;
  cfg.log.progress = "quiet";
  auto optimizer = make_optimizer(cfg.train.optimizer, model->parameters());
  // Test top-1 peaks at epoch 2, validation top-1 at epoch 1: validation chooses.
  ScriptedMethod method(*model, {0.4, 0.7, 0.5}, {0.6, 0.5, 0.55});
  TrainingLoop loop(cfg, "phase_i", 1, 42, dir.path(), *model, *optimizer, model->parameters());
  loop.validation = true;
  const auto r = fit(loop, method);
  EXPECT_EQ(method.validated_, 3);
  EXPECT_EQ(r.selected_on, "validation");
  EXPECT_EQ(r.best_epoch, 1);
  EXPECT_DOUBLE_EQ(r.best_top1, 0.4);  // the chosen epoch's test figure, not the test maximum
  ASSERT_TRUE(r.best_val_top1.has_value());
  EXPECT_DOUBLE_EQ(*r.best_val_top1, 0.6);
  EXPECT_DOUBLE_EQ(r.last.top1, 0.5);
  EXPECT_DOUBLE_EQ(r.history[1]["val_acc"].get<double>(), 0.5);
  EXPECT_EQ(read_checkpoint_info(r.best_checkpoint).epoch, 1);

  // A diverged validation loss stops the run before the epoch's checkpoints.
  testing::TempDir dir2;
  auto model2 = models::make_model("resnet20", 2);
  auto opt2 = make_optimizer(cfg.train.optimizer, model2->parameters());
  ScriptedMethod diverged(*model2, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5});
  diverged.val_loss_nan_ = true;
  TrainingLoop loop2(cfg, "phase_i", 1, 42, dir2.path(), *model2, *opt2, model2->parameters());
  loop2.validation = true;
  EXPECT_THROW(fit(loop2, diverged), TrainingError);
  EXPECT_FALSE(fs::exists(dir2 / "checkpoints/last.pt"));
}

TEST(Engine, ANonFiniteLossStopsBeforeTheEpochsCheckpoints) {
  testing::TempDir dir;
  auto model = models::make_model("resnet20", 2);
  io::Config cfg;
  cfg.train.num_epoch = 2;
  cfg.log.progress = "quiet";
  auto optimizer = make_optimizer(cfg.train.optimizer, model->parameters());
  ScriptedMethod method(*model, {0.5, 0.5});
  method.poison_ = true;
  TrainingLoop loop(cfg, "phase_i", 1, 1, dir.path(), *model, *optimizer, model->parameters());
  EXPECT_THROW(fit(loop, method), TrainingError);
  EXPECT_FALSE(fs::exists(dir / "checkpoints/last.pt"));
}

TEST(Engine, AMidEpochCheckpointResumesBitForBit) {
  io::Config cfg;
  cfg.train.num_epoch = 3;
  cfg.train.lr_scheduler.name = "constant";
  cfg.log.progress = "quiet";
  auto run = [&](const fs::path& dir, int64_t step_interval, int kill_at_call,
                 std::optional<CheckpointInfo>* resumed_from, std::vector<int64_t>* epochs,
                 int64_t* seeked) {
    torch::manual_seed(0);
    auto model = models::make_model("resnet20", 2);
    auto optimizer = make_optimizer(cfg.train.optimizer, model->parameters());
    auto c = cfg;
    c.checkpoint.save_step_interval = step_interval;
    ScriptedMethod method(*model, {0.5, 0.5, 0.5});
    method.batches_ = 4;
    method.seekable_ = true;
    method.kill_at_call_ = kill_at_call;
    TrainingLoop loop(c, "phase_i", 1, 42, dir.string(), *model, *optimizer, model->parameters());
    if (resumed_from) {
      c.checkpoint.resume = (dir / "checkpoints/last.pt").string();
      *resumed_from = load_checkpoint(c.checkpoint.resume, *model, optimizer.get());
      loop.resumed = *resumed_from;
    }
    auto result = fit(loop, method);
    if (epochs) *epochs = method.epochs_;
    if (seeked) *seeked = method.seeked_;
    return result;
  };
  testing::TempDir dir;
  const auto full = run(dir / "full", 0, 0, nullptr, nullptr, nullptr);
  // Epoch 1 is calls 1-5 (four steps, then the end); epoch 2's step 3 is
  // call 8 and is followed by a checkpoint (every 3 steps); call 9 is killed.
  EXPECT_THROW(run(dir / "part", 3, 9, nullptr, nullptr, nullptr), std::runtime_error);
  const auto kept = read_checkpoint_info(dir / "part/checkpoints/last.pt");
  EXPECT_EQ(kept.epoch, 1);
  EXPECT_EQ(kept.step, 3);
  std::optional<CheckpointInfo> from;
  std::vector<int64_t> epochs;
  int64_t seeked = -1;
  const auto resumed = run(dir / "part", 3, 0, &from, &epochs, &seeked);
  EXPECT_EQ(epochs, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(seeked, 3);
  // Bit for bit: the weights, the optimiser's effect, and epoch 2's running
  // loss (three steps before the kill, one after).
  auto a = models::make_model("resnet20", 2), b = models::make_model("resnet20", 2);
  load_checkpoint(full.last_checkpoint, *a, nullptr);
  load_checkpoint(resumed.last_checkpoint, *b, nullptr);
  for (const auto& p : a->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), b->named_parameters()[p.key()])) << p.key();
  }
  for (const auto& buf : a->named_buffers()) {
    EXPECT_TRUE(torch::equal(buf.value(), b->named_buffers()[buf.key()])) << buf.key();
  }
  ASSERT_EQ(resumed.history.size(), 3u);
  for (size_t e = 0; e < 3; ++e) {
    EXPECT_EQ(resumed.history[e]["train_loss"].get<double>(),
              full.history[e]["train_loss"].get<double>())
        << "epoch " << e + 1;
    EXPECT_EQ(resumed.history[e]["train_acc"].get<double>(),
              full.history[e]["train_acc"].get<double>());
  }
  // The epoch end after the resume is a plain checkpoint again.
  EXPECT_EQ(read_checkpoint_info(resumed.last_checkpoint).step, 0);

  // A method that cannot continue an epoch refuses such a checkpoint.
  testing::TempDir dir2;
  ASSERT_THROW(run(dir2 / "part", 3, 9, nullptr, nullptr, nullptr), std::runtime_error);
  torch::manual_seed(0);
  auto model = models::make_model("resnet20", 2);
  auto optimizer = make_optimizer(cfg.train.optimizer, model->parameters());
  ScriptedMethod fixed(*model, {0.5, 0.5});
  fixed.batches_ = 4;
  TrainingLoop loop(cfg, "phase_i", 1, 42, dir2 / "part", *model, *optimizer, model->parameters());
  loop.resumed = load_checkpoint(dir2 / "part/checkpoints/last.pt", *model, optimizer.get());
  try {
    fit(loop, fixed);
    FAIL() << "a mid-epoch checkpoint resumed by a method that cannot seek";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot continue an epoch"), std::string::npos)
        << e.what();
  }
}

TEST(Comparison, GroupRowsChangesAndEmptyGroups) {
  data::LongTailDataset d;
  d.train.class_names = {"cat", "dog"};
  d.class_counts = {150, 10};  // many-shot, few-shot
  d.head = {true, false};
  eval::Report before, after;
  before.top1 = 0.5;
  before.per_class = {0.9, 0.1};
  before.head = before.many = 0.9;
  before.tail = before.few = 0.1;
  after = before;
  after.top1 = 0.6;
  after.per_class = {0.85, 0.35};
  after.head = after.many = 0.85;
  after.tail = after.few = 0.35;
  const auto table = format_comparison(before, after, d);
  // By hand: tail 10.00 → 35.00 is +25.00; no medium-shot class: dashes.
  EXPECT_NE(table.find("tail classes              10.00      35.00  +25.00"), std::string::npos)
      << table;
  EXPECT_NE(table.find("head classes              90.00      85.00   -5.00"), std::string::npos)
      << table;
  EXPECT_NE(table.find("medium-shot (20-100)          -          -       -"), std::string::npos)
      << table;
  EXPECT_NE(table.find("  1 dog            10 T"), std::string::npos) << table;
}

}  // namespace
}  // namespace fsa::train
