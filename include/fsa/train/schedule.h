// Learning-rate schedules and the optimiser factory (config → torch::optim).
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <vector>

#include "fsa/io/config.h"

namespace fsa::train {

/// Learning rate for 0-based `epoch`:
/// - warmup: base·(f + (1 − f)·epoch/W) for epoch < W (f = warmup_factor, W =
///   warmup_epochs; METHOD.md Phase I: from lr/3 to lr over 5 epochs), then
///   base·gamma^(number of milestones <= epoch);
/// - MultiStepLR: base·gamma^(milestones <= epoch); StepLR: base·gamma^(epoch / step_size);
/// - CosineAnnealingLR: η_min + (base − η_min)·(1 + cos(π·min(epoch, T)/T))/2 with
///   T = t_max (PyTorch's CosineAnnealingLR stepped once per epoch; held at η_min after T);
/// - constant: base.
double lr_at_epoch(const io::SchedulerConfig& s, double base_lr, int64_t epoch);

/// SGD, Adam or AdamW over `params` as the config says (AdamW's weight decay
/// is decoupled, Adam's is L2). Throws io::ConfigError for an unknown name.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const io::OptimizerConfig& o,
                                                        std::vector<torch::Tensor> params);

/// Sets the learning rate of every parameter group.
void set_learning_rate(torch::optim::Optimizer& opt, double lr);

}  // namespace fsa::train
