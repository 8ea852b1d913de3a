#include "fsa/io/npy.h"

#include <fmt/format.h>

#include <stdexcept>

namespace fsa::io {

std::string npy_bytes(const torch::Tensor& t) {
  const char* descr = nullptr;
  switch (t.scalar_type()) {
    case torch::kFloat32: descr = "<f4"; break;
    case torch::kFloat64: descr = "<f8"; break;
    case torch::kInt64: descr = "<i8"; break;
    default:
      throw std::invalid_argument(fmt::format(
          "npy_bytes: dtype {} is not written; expected float32, float64 or int64",
          c10::toString(t.scalar_type())));
  }
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the .npy data are written as held");
  std::string shape;
  for (const auto d : t.sizes()) shape += fmt::format("{}, ", d);
  if (t.dim() > 1) shape.resize(shape.size() - 2);  // (3,) for one dimension, (2, 3) for two
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", descr, shape);
  // Magic (6) + version (2) + length (2) + header, padded with spaces to a
  // multiple of 64 bytes and ended by a newline, as numpy writes it.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  const auto c = t.detach().cpu().contiguous();
  out.append(static_cast<const char*>(c.data_ptr()), c.nbytes());
  return out;
}

}  // namespace fsa::io
