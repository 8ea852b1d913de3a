#include "fsa/bench/flops.h"

#include <ATen/record_function.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cstring>
#include <memory>
#include <stdexcept>

namespace fsa::bench {
namespace {

/// Operations per output element of the call being recorded: 2·(weight
/// elements per output channel), the same for convolution and linear.
struct CallContext : at::ObserverContext {
  int64_t flops_per_output = 0;
};

// RecordFunction callbacks are plain function pointers, so the running total
// is reached through a thread-local pointer set for the duration of count_flops.
thread_local int64_t* total_flops = nullptr;

bool counted(const char* name) {
  return std::strcmp(name, "aten::convolution") == 0 || std::strcmp(name, "aten::linear") == 0;
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (total_flops == nullptr || !counted(fn.name())) return nullptr;
  const auto inputs = fn.inputs();
  if (inputs.size() < 2 || !inputs[1].isTensor()) return nullptr;
  const auto& weight = inputs[1].toTensor();  // conv: [Cout, Cin/g, Kh, Kw]; linear: [out, in]
  if (weight.dim() < 2 || weight.size(0) == 0) return nullptr;
  auto ctx = std::make_unique<CallContext>();
  ctx->flops_per_output = 2 * (weight.numel() / weight.size(0));
  return ctx;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* ctx) {
  if (total_flops == nullptr || ctx == nullptr) return;
  const auto& outputs = fn.outputs();
  if (outputs.empty() || !outputs[0].isTensor()) return;
  *total_flops += static_cast<CallContext*>(ctx)->flops_per_output * outputs[0].toTensor().numel();
}

}  // namespace

int64_t count_flops(const std::function<void()>& fn) {
  int64_t total = 0;
  total_flops = &total;
  const auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(on_start, on_end)
          .needsInputs(true)
          .needsOutputs(true)
          .scopes({at::RecordScope::FUNCTION}));
  try {
    fn();
  } catch (...) {
    at::removeCallback(handle);
    total_flops = nullptr;
    throw;
  }
  at::removeCallback(handle);
  total_flops = nullptr;
  return total;
}

int64_t forward_flops_per_image(models::Backbone& model, int64_t height, int64_t width) {
  const bool was_training = model.is_training();
  const auto params = model.parameters();
  const auto device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();
  model.eval();
  const auto flops = count_flops([&] {
    torch::NoGradGuard no_grad;
    model.forward(torch::zeros({1, 3, height, width}, torch::TensorOptions().device(device)));
  });
  model.train(was_training);
  if (flops == 0) {
    throw std::runtime_error("forward_flops_per_image: no convolution or linear call was "
                             "recorded; this LibTorch build does not report operator calls");
  }
  return flops;
}

}  // namespace fsa::bench
