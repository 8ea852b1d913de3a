// NumPy's .npy format (version 1.0) for arrays fsa writes for other tools:
// `fsa predict --logits / --features`. numpy.load reads them.
#pragma once

#include <torch/types.h>

#include <string>

namespace fsa::io {

/// The bytes of a .npy file holding `t` (on any device; copied to the CPU in
/// C order): dtype '<f4' (float32), '<f8' (float64) or '<i8' (int64),
/// little-endian, shape t.sizes(). Throws std::invalid_argument for another
/// dtype.
std::string npy_bytes(const torch::Tensor& t);

}  // namespace fsa::io
