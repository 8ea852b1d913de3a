#include "fsa/train/schedule.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace fsa::train {
namespace {

TEST(Schedule, ReferenceCifarWarmupMultiStep) {
  io::SchedulerConfig s;
  s.name = "warmup";
  s.warmup_epochs = 5;
  s.warmup_factor = 1.0 / 3.0;
  s.milestones = {160, 180};
  s.gamma = 0.01;
  const double lr = 0.1;
  // Linear from lr/3 at epoch 0 to lr at epoch 5: lr/3 + (2lr/3)·e/5.
  EXPECT_NEAR(lr_at_epoch(s, lr, 0), 0.1 / 3, 1e-12);
  EXPECT_NEAR(lr_at_epoch(s, lr, 1), 0.1 / 3 + 0.2 / 3 / 5, 1e-12);
  EXPECT_NEAR(lr_at_epoch(s, lr, 4), 0.1 / 3 + 0.2 / 3 * 4 / 5, 1e-12);
  EXPECT_NEAR(lr_at_epoch(s, lr, 5), 0.1, 1e-12);
  EXPECT_NEAR(lr_at_epoch(s, lr, 159), 0.1, 1e-12);
  EXPECT_NEAR(lr_at_epoch(s, lr, 160), 0.001, 1e-12);
  EXPECT_NEAR(lr_at_epoch(s, lr, 179), 0.001, 1e-12);
  EXPECT_NEAR(lr_at_epoch(s, lr, 180), 0.00001, 1e-15);
  EXPECT_NEAR(lr_at_epoch(s, lr, 199), 0.00001, 1e-15);
}

TEST(Schedule, CosineAnnealingAsPyTorchStepsItPerEpoch) {
  io::SchedulerConfig s;
  s.name = "CosineAnnealingLR";
  s.t_max = 10;
  s.eta_min = 0.0;
  // lr_e = base·(1 + cos(π e/10))/2: 0.05 at e = 0, 0.025 at e = 5, 0.05·(1 + cos(0.9π))/2 at 9.
  EXPECT_NEAR(lr_at_epoch(s, 0.05, 0), 0.05, 1e-15);
  EXPECT_NEAR(lr_at_epoch(s, 0.05, 5), 0.025, 1e-15);
  EXPECT_NEAR(lr_at_epoch(s, 0.05, 9), 0.05 * (1 + std::cos(0.9 * M_PI)) / 2, 1e-15);
  EXPECT_NEAR(lr_at_epoch(s, 0.05, 12), 0.0, 1e-15);
  s.eta_min = 0.001;
  EXPECT_NEAR(lr_at_epoch(s, 0.05, 5), 0.001 + 0.049 / 2, 1e-15);
}

TEST(Schedule, StepMultiStepConstant) {
  io::SchedulerConfig s;
  s.name = "StepLR";
  s.step_size = 30;
  s.gamma = 0.1;
  EXPECT_NEAR(lr_at_epoch(s, 0.2, 29), 0.2, 1e-12);
  EXPECT_NEAR(lr_at_epoch(s, 0.2, 30), 0.02, 1e-12);
  EXPECT_NEAR(lr_at_epoch(s, 0.2, 95), 0.0002, 1e-12);
  s.name = "MultiStepLR";
  s.milestones = {30, 60, 80};  // the ImageNet-LT recipe
  EXPECT_NEAR(lr_at_epoch(s, 0.2, 0), 0.2, 1e-12);
  EXPECT_NEAR(lr_at_epoch(s, 0.2, 60), 0.002, 1e-12);
  EXPECT_NEAR(lr_at_epoch(s, 0.2, 99), 0.0002, 1e-12);
  s.name = "constant";
  EXPECT_EQ(lr_at_epoch(s, 5e-4, 39), 5e-4);
}

TEST(Schedule, SetLearningRateReachesEveryGroup) {
  io::OptimizerConfig o;
  o.name = "AdamW";
  o.lr = 1e-5;
  auto opt = make_optimizer(o, {torch::zeros({2}, torch::requires_grad())});
  set_learning_rate(*opt, 0.25);
  EXPECT_EQ(opt->param_groups()[0].options().get_lr(), 0.25);
}

}  // namespace
}  // namespace fsa::train
