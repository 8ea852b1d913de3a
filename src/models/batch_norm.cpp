#include "fsa/models/batch_norm.h"

#include <torch/autograd.h>

#include <cstdint>
#include <stdexcept>

#include "fsa/dist/dist.h"

namespace fsa::models {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const std::vector<int64_t> kReduced{0, 2, 3};  // all but the channels of [N, C, H, W]

torch::Tensor per_channel(const torch::Tensor& v) { return v.view({1, -1, 1, 1}); }

c10::ScalarType compute_type(const torch::Tensor& x) {
  return x.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
}

/// Batch normalisation over the global batch of a data-parallel step
/// (torch.nn.SyncBatchNorm's forward and backward).
///
/// The gradient: each rank's loss is the mean over its own share of n_r of
/// the N values per channel, and dist::average_gradients weights its
/// gradients by w = n_r / N, so the gradient of the global loss reaching
/// this rank's output is w·g. With x̂ the normalised input and γ the
/// weight, one process's input gradient (w.r.t. the global loss) is
///   γ·invstd·(g_global − (Σ g_global + x̂·Σ g_global·x̂) / N);
/// this rank returns it divided by w (its weighted sum with the other
/// gradients is then the global one again), with both sums over every rank
/// from one all-reduce of the weighted local sums:
///   γ·invstd·(g − (S1 + x̂·S2) / n_r),  S1 = Σ_ranks w·Σ g,  S2 = Σ_ranks w·Σ g·x̂.
/// γ's and β's gradients are the local sums, which the weighted average of
/// the ranks' gradients turns into the global ones.
struct SyncBatchNormFunction : torch::autograd::Function<SyncBatchNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               torch::Tensor running_mean, torch::Tensor running_var, double eps,
                               double factor, dist::Group* group) {
    const int64_t channels = x.size(1);
    const int64_t local = channels > 0 ? x.numel() / channels : 0;
    // float32 (bfloat16 inputs too), or float64 for a float64 network.
    const auto xf = x.to(compute_type(x));
    auto mean = torch::zeros({channels}, torch::kDouble);
    auto var = torch::zeros({channels}, torch::kDouble);
    if (local > 0) {
      auto [v, m] = torch::var_mean(xf, kReduced, /*unbiased=*/false);
      mean = m.to(torch::kDouble);
      var = v.to(torch::kDouble);
    }
    // Every rank's (count, means, variances), combined as the parallel
    // variance formula: Σ n_r·(var_r + (mean_r − mean)²) / N.
    const auto mine =
        torch::cat({torch::full({1}, static_cast<double>(local), torch::kDouble), mean, var});
    const auto all = group->all_gather(mine);  // [ranks, 1 + 2C]
    const auto counts = all.select(1, 0).unsqueeze(1);
    const auto means = all.slice(1, 1, 1 + channels);
    const auto vars = all.slice(1, 1 + channels);
    const double n = counts.sum().item<double>();
    if (n <= 1) {
      throw std::invalid_argument(
          "BatchNorm2d: the global batch has one value per channel (expected more than one "
          "when training)");
    }
    const auto global_mean = (counts * means).sum(0) / n;
    const auto global_var = (counts * (vars + (means - global_mean).pow(2))).sum(0) / n;
    {
      torch::NoGradGuard no_grad;
      if (running_mean.defined()) {
        running_mean.mul_(1 - factor).add_(global_mean.to(running_mean.dtype()), factor);
        running_var.mul_(1 - factor)
            .add_((global_var * (n / (n - 1))).to(running_var.dtype()), factor);
      }
    }
    const auto mean_f = global_mean.to(xf.scalar_type());
    const auto invstd = (global_var + eps).rsqrt().to(xf.scalar_type());
    ctx->save_for_backward({x, weight, mean_f, invstd});
    ctx->saved_data["local"] = local;
    // The group outlives the step (the run's world); autograd keeps IValues only.
    ctx->saved_data["group"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(group));
    ctx->saved_data["share"] = static_cast<double>(local) / n;
    auto y = (xf - per_channel(mean_f)) * per_channel(invstd);
    if (weight.defined()) y = y * per_channel(weight) + per_channel(bias);
    return y.to(x.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto& mean = saved[2];
    const auto& invstd = saved[3];
    const auto local = ctx->saved_data["local"].toInt();
    const double share = ctx->saved_data["share"].toDouble();
    auto* group =
        reinterpret_cast<dist::Group*>(static_cast<intptr_t>(ctx->saved_data["group"].toInt()));

    const auto g = grad_outputs[0].to(mean.scalar_type());
    const auto xhat = (x.to(mean.scalar_type()) - per_channel(mean)) * per_channel(invstd);
    const auto sum_dy = g.sum(kReduced);
    const auto sum_dy_xhat = (g * xhat).sum(kReduced);
    auto sums = torch::cat({sum_dy, sum_dy_xhat}).to(torch::kDouble) * share;
    group->all_reduce_sum_(sums);
    const int64_t channels = mean.size(0);
    const auto s1 = sums.slice(0, 0, channels).to(mean.scalar_type());
    const auto s2 = sums.slice(0, channels).to(mean.scalar_type());
    const auto scale = weight.defined() ? weight * invstd : invstd;
    torch::Tensor grad_x;
    if (local > 0) {
      grad_x = per_channel(scale) *
               (g - (per_channel(s1) + xhat * per_channel(s2)) / static_cast<double>(local));
      grad_x = grad_x.to(x.scalar_type());
    } else {
      grad_x = torch::zeros_like(x);
    }
    torch::Tensor grad_weight, grad_bias;
    if (weight.defined()) {
      grad_weight = sum_dy_xhat.to(weight.dtype());
      grad_bias = sum_dy.to(weight.dtype());
    }
    // One entry per argument of forward: x, weight, bias, running_mean,
    // running_var, eps, factor, group.
    return {grad_x, grad_weight, grad_bias, {}, {}, {}, {}, {}};
  }
};

}  // namespace

BatchNorm2dImpl::BatchNorm2dImpl(torch::nn::BatchNormOptions options)
    : options(std::move(options)) {
  reset();
}

void BatchNorm2dImpl::reset() {
  const int64_t c = options.num_features();
  if (options.affine()) {
    weight = register_parameter("weight", torch::empty({c}));
    bias = register_parameter("bias", torch::empty({c}));
  }
  if (options.track_running_stats()) {
    running_mean = register_buffer("running_mean", torch::zeros({c}));
    running_var = register_buffer("running_var", torch::ones({c}));
    num_batches_tracked = register_buffer("num_batches_tracked", torch::tensor(0, torch::kLong));
  }
  reset_parameters();
}

void BatchNorm2dImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  if (options.track_running_stats()) {
    running_mean.zero_();
    running_var.fill_(1);
    num_batches_tracked.zero_();
  }
  if (options.affine()) {
    weight.fill_(1);
    bias.zero_();
  }
}

torch::Tensor BatchNorm2dImpl::forward(const torch::Tensor& x) {
  if (x.dim() != 4) {
    throw std::invalid_argument("BatchNorm2d: expected a 4-D input [N, C, H, W], got " +
                                std::to_string(x.dim()) + "-D");
  }
  // torch::nn::BatchNorm2d's momentum: a fixed factor, or (momentum None)
  // the cumulative average over the batches seen.
  double factor = options.momentum().value_or(0.0);
  if (is_training() && options.track_running_stats()) {
    torch::NoGradGuard no_grad;
    num_batches_tracked.add_(1);
    if (!options.momentum()) factor = 1.0 / num_batches_tracked.item<double>();
  }
  if (!is_training() || !group_ || group_->size() == 1) {
    return torch::batch_norm(x, weight, bias, running_mean, running_var,
                             is_training() || !options.track_running_stats(), factor, options.eps(),
                             /*cudnn_enabled=*/true);
  }
  return SyncBatchNormFunction::apply(x, weight, bias, running_mean, running_var, options.eps(),
                                      factor, group_.get());
}

void BatchNorm2dImpl::pretty_print(std::ostream& stream) const {
  stream << std::boolalpha << "fsa::models::BatchNorm2d(" << options.num_features()
         << ", eps=" << options.eps() << ", momentum=";
  if (options.momentum()) {
    stream << *options.momentum();
  } else {
    stream << "None";
  }
  stream << ", affine=" << options.affine()
         << ", track_running_stats=" << options.track_running_stats() << ")";
}

int64_t sync_batchnorm(torch::nn::Module& module, std::shared_ptr<dist::Group> group) {
  int64_t n = 0;
  for (auto& m : module.modules(/*include_self=*/true)) {
    if (auto* bn = m->as<BatchNorm2dImpl>()) {
      bn->set_group(group);
      ++n;
    }
  }
  return n;
}

}  // namespace fsa::models
