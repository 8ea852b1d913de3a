// Mixed precision and memory format of training (issue 5, "Speed"): the
// `precision` and `memory_format` config keys.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace fsa::train {

/// For its lifetime, and when `enabled`, runs the operations of the current
/// thread on `device`'s type under autocast to bfloat16: convolutions, matrix
/// products and linear layers compute in bfloat16 (float32 accumulation inside
/// oneDNN / cuBLAS), while the float32 parameters, their gradients and the
/// optimiser state stay float32. Outputs of autocast operations are bfloat16:
/// convert logits to float32 before a loss (`.to(torch::kFloat32)`).
/// Nests like torch.autocast: the previous state (enabled flag and dtype of
/// the device type) is restored on destruction, and the cast-weight cache is
/// cleared when the outermost enabled guard ends, so weights updated between
/// two steps are cast again. Disabled, it changes nothing.
/// bfloat16 keeps float32's exponent range, so no loss scaling is needed.
/// Throws std::invalid_argument for a device type other than CPU or CUDA.
class AutocastGuard {
 public:
  AutocastGuard(c10::Device device, bool enabled);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType type_;
  bool enabled_;
  bool previous_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::Undefined;
};

/// Whether autocast is on for `type` (CPU or CUDA) on this thread.
bool autocast_enabled(c10::DeviceType type);

}  // namespace fsa::train
