#include "fsa/train/precision.h"

#include <ATen/autocast_mode.h>
#include <fmt/format.h>
#include <torch/version.h>

#include <stdexcept>

// LibTorch 2.4 replaced the per-device functions (set_cpu_enabled, ...) with
// ones that take the device type; the old ones are deprecated there.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define FSA_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace fsa::train {
namespace {

void check_type(c10::DeviceType type) {
  if (type != c10::DeviceType::CPU && type != c10::DeviceType::CUDA) {
    throw std::invalid_argument(
        fmt::format("autocast: expected a CPU or CUDA device, got {}", c10::DeviceTypeName(type)));
  }
}

void set_enabled(c10::DeviceType type, bool on) {
#ifdef FSA_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(type, on);
#else
  if (type == c10::DeviceType::CPU) {
    at::autocast::set_cpu_enabled(on);
  } else {
    at::autocast::set_enabled(on);
  }
#endif
}

c10::ScalarType get_dtype(c10::DeviceType type) {
#ifdef FSA_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(type);
#else
  return type == c10::DeviceType::CPU ? at::autocast::get_autocast_cpu_dtype()
                                      : at::autocast::get_autocast_gpu_dtype();
#endif
}

void set_dtype(c10::DeviceType type, c10::ScalarType dtype) {
#ifdef FSA_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == c10::DeviceType::CPU) {
    at::autocast::set_autocast_cpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_gpu_dtype(dtype);
  }
#endif
}

}  // namespace

bool autocast_enabled(c10::DeviceType type) {
  check_type(type);
#ifdef FSA_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(type);
#else
  return type == c10::DeviceType::CPU ? at::autocast::is_cpu_enabled()
                                      : at::autocast::is_enabled();
#endif
}

AutocastGuard::AutocastGuard(c10::Device device, bool enabled)
    : type_(device.type()), enabled_(enabled) {
  if (!enabled_) return;
  check_type(type_);
  previous_enabled_ = autocast_enabled(type_);
  previous_dtype_ = get_dtype(type_);
  set_enabled(type_, true);
  set_dtype(type_, c10::ScalarType::BFloat16);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  // As torch.autocast.__exit__: the cache of cast weights lives as long as
  // the outermost autocast region.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_enabled(type_, previous_enabled_);
  set_dtype(type_, previous_dtype_);
}

}  // namespace fsa::train
