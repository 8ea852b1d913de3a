#include "fsa/models/summary.h"

#include <ATen/record_function.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include <cstring>
#include <stdexcept>

namespace fsa::models {
namespace {

/// MACs of the operators observed on this thread since the last take().
/// RecordFunction callbacks are plain function pointers, hence the
/// thread-local state; only summarize() installs the callbacks, and only for
/// its own thread.
thread_local int64_t tls_macs = 0;
/// Counted operators running now: one inside another (aten::linear calling
/// aten::addmm in some builds) is counted once, at the outermost.
thread_local int tls_depth = 0;

struct Counted : at::ObserverContext {};

int64_t conv_macs(c10::ArrayRef<const c10::IValue> in) {
  // convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
  // groups); weight [C_out, C_in/groups, K...], so MACs = weight.numel() · output positions.
  const auto& x = in[0].toTensor();
  const auto& w = in[1].toTensor();
  const bool transposed = in[6].toBool();
  const auto stride = in[3].toIntVector(), padding = in[4].toIntVector(),
             dilation = in[5].toIntVector();
  auto pick = [](const std::vector<int64_t>& v, size_t i) { return v.size() == 1 ? v[0] : v[i]; };
  int64_t positions = 1;
  for (int64_t d = 2; d < x.dim(); ++d) {
    const auto i = static_cast<size_t>(d - 2);
    // A transposed convolution does weight.numel() MACs per *input* position.
    positions *=
        transposed ? x.size(d)
                   : (x.size(d) + 2 * pick(padding, i) - pick(dilation, i) * (w.size(d) - 1) - 1) /
                             pick(stride, i) +
                         1;
  }
  return w.numel() * positions * x.size(0);
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  const char* name = fn.name();
  const auto in = fn.inputs();
  int64_t macs = -1;
  if (std::strcmp(name, "aten::convolution") == 0 && in.size() == 9) {
    macs = conv_macs(in);
  } else if (std::strcmp(name, "aten::linear") == 0 && in.size() >= 2) {
    const auto& x = in[0].toTensor();
    const auto& w = in[1].toTensor();  // [out, in]
    macs = w.numel() * (x.numel() / w.size(1));
  } else if (std::strcmp(name, "aten::addmm") == 0 && in.size() >= 3) {
    // LibTorch's functional::linear is addmm(bias, x, weight.t()) for 2-D x.
    macs = in[1].toTensor().size(0) * in[1].toTensor().size(1) * in[2].toTensor().size(1);
  } else if (std::strcmp(name, "aten::matmul") == 0 && in.size() == 2) {
    const auto& a = in[0].toTensor();
    const auto& b = in[1].toTensor();
    if (a.dim() >= 1 && b.dim() >= 1) {
      const int64_t k = a.size(-1);
      macs = (a.numel() / k) * (b.dim() >= 2 ? b.numel() / k : 1);
    }
  }
  if (macs < 0) return nullptr;
  if (tls_depth++ == 0) tls_macs += macs;
  return std::make_unique<Counted>();
}

void on_end(const at::RecordFunction&, at::ObserverContext* ctx) {
  if (ctx != nullptr) --tls_depth;
}

/// Installs the observer for the lifetime of the object, on this thread.
class MacObserver {
 public:
  MacObserver() {
    tls_macs = 0;
    tls_depth = 0;
    handle_ = at::addThreadLocalCallback(at::RecordFunctionCallback(&on_start, &on_end)
                                             .needsInputs(true)
                                             .scopes({at::RecordScope::FUNCTION}));
  }
  ~MacObserver() { at::removeCallback(handle_); }
  MacObserver(const MacObserver&) = delete;
  MacObserver& operator=(const MacObserver&) = delete;
  int64_t take() {
    const auto m = tls_macs;
    tls_macs = 0;
    return m;
  }

 private:
  at::CallbackHandle handle_;
};

std::string with_commas(int64_t n) {
  auto s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > (s[0] == '-' ? 1 : 0); i -= 3) {
    s.insert(static_cast<size_t>(i), ",");
  }
  return s;
}

}  // namespace

ModelSummary summarize(Backbone& model, int64_t height, int64_t width) {
  if (height < 1 || width < 1) {
    throw std::invalid_argument(fmt::format("summarize: input {}x{} is empty", height, width));
  }
  ModelSummary s;
  s.arch = model.arch();
  s.num_classes = model.num_classes();
  s.input_height = height;
  s.input_width = width;
  const bool was_training = model.is_training();
  model.eval();
  {
    torch::NoGradGuard no_grad;
    const auto device = model.parameters().front().device();
    const auto x = torch::zeros({1, 3, height, width}, torch::TensorOptions().device(device));
    MacObserver observer;
    try {
      model.forward_visiting(x, [&](const std::string& name, const torch::Tensor& out) {
        LayerSummary layer;
        layer.name = name;
        layer.output_shape.assign(out.sizes().begin() + 1, out.sizes().end());
        layer.macs = observer.take();
        s.layers.push_back(std::move(layer));
      });
    } catch (const c10::Error& e) {
      model.train(was_training);
      throw std::invalid_argument(fmt::format("{}: a {}x{} input is too small for the network: {}",
                                              s.arch, height, width, e.what_without_backtrace()));
    }
  }
  model.train(was_training);
  for (const auto& kv : model.named_parameters()) {
    const auto& key = kv.key();
    LayerSummary* owner = nullptr;
    for (auto& layer : s.layers) {
      if (key.rfind(layer.name + ".", 0) == 0) owner = &layer;
    }
    if (owner == nullptr) owner = &s.layers.front();  // conv1, bn1: the stem's
    owner->parameters += kv.value().numel();
    s.parameters += kv.value().numel();
  }
  for (const auto& layer : s.layers) s.macs += layer.macs;
  return s;
}

int64_t count_macs(Backbone& model, int64_t height, int64_t width) {
  return summarize(model, height, width).macs;
}

std::string format_summary(const ModelSummary& s) {
  std::string out = fmt::format("{}: {} classes, input 3x{}x{}\n", s.arch, s.num_classes,
                                s.input_height, s.input_width);
  out += fmt::format("{:<12} {:>16} {:>14} {:>17}\n", "layer", "output", "parameters", "MACs");
  for (const auto& l : s.layers) {
    out += fmt::format("{:<12} {:>16} {:>14} {:>17}\n", l.name,
                       fmt::format("{}", fmt::join(l.output_shape, "x")), with_commas(l.parameters),
                       with_commas(l.macs));
  }
  out += fmt::format("{:<12} {:>16} {:>14} {:>17}\n", "total", "", with_commas(s.parameters),
                     with_commas(s.macs));
  out += fmt::format("{} parameters; {:.3f} G multiply-accumulates per image\n",
                     with_commas(s.parameters), double(s.macs) / 1e9);
  return out;
}

}  // namespace fsa::models
