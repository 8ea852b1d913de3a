#include "fsa/train/schedule.h"

#include <fmt/format.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <algorithm>
#include <cmath>

namespace fsa::train {

double lr_at_epoch(const io::SchedulerConfig& s, double base_lr, int64_t epoch) {
  auto steps_passed = [&] {
    int64_t n = 0;
    for (auto m : s.milestones) n += epoch >= m ? 1 : 0;
    return n;
  };
  if (s.name == "constant") return base_lr;
  if (s.name == "CosineAnnealingLR") {  // torch.optim.lr_scheduler.CosineAnnealingLR, per epoch
    const double t = double(std::min(epoch, s.t_max)) / double(std::max<int64_t>(s.t_max, 1));
    return s.eta_min + (base_lr - s.eta_min) * (1.0 + std::cos(M_PI * t)) / 2.0;
  }
  if (s.name == "StepLR") return base_lr * std::pow(s.gamma, double(epoch / s.step_size));
  if (s.name == "warmup" && epoch < s.warmup_epochs) {
    const double f = s.warmup_factor;
    return base_lr * (f + (1.0 - f) * double(epoch) / double(s.warmup_epochs));
  }
  return base_lr * std::pow(s.gamma, double(steps_passed()));
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const io::OptimizerConfig& o,
                                                        std::vector<torch::Tensor> params) {
  if (o.name == "SGD") {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay)
                    .nesterov(o.nesterov));
  }
  if (o.name == "Adam") {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps)
                    .weight_decay(o.weight_decay));
  }
  if (o.name == "AdamW") {
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps)
                    .weight_decay(o.weight_decay));
  }
  throw io::ConfigError(fmt::format("train.optimizer.name '{}': expected SGD, Adam or AdamW",
                                    o.name));
}

void set_learning_rate(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) group.options().set_lr(lr);
}

}  // namespace fsa::train
