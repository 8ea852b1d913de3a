#include "fsa/io/npy.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <cstring>
#include <fstream>

#include "test_util.h"

namespace fsa::io {
namespace {

using fsa::testing::TempDir;

TEST(Npy, HeaderAndDataAsNumpyWritesThem) {
  const auto t = torch::arange(6, torch::kFloat32).view({2, 3}) / 4;
  const auto bytes = npy_bytes(t);
  ASSERT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len =
      static_cast<unsigned char>(bytes[8]) | static_cast<unsigned char>(bytes[9]) << 8;
  ASSERT_EQ((10 + header_len) % 64, 0u);
  const auto header = bytes.substr(10, header_len);
  EXPECT_EQ(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0), 0u)
      << header;
  EXPECT_EQ(header.back(), '\n');
  ASSERT_EQ(bytes.size(), 10 + header_len + 6 * sizeof(float));
  float values[6];
  std::memcpy(values, bytes.data() + 10 + header_len, sizeof(values));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(values[i], i / 4.0f);
  // One dimension is written as a one-element tuple; int64 and float64 kinds.
  EXPECT_NE(npy_bytes(torch::arange(3)).find("'descr': '<i8'"), std::string::npos);
  EXPECT_NE(npy_bytes(torch::arange(3)).find("'shape': (3, )"), std::string::npos);
  EXPECT_NE(npy_bytes(torch::zeros({1}, torch::kFloat64)).find("'<f8'"), std::string::npos);
  EXPECT_THROW(npy_bytes(torch::zeros({2}, torch::kUInt8)), std::invalid_argument);
}

TEST(Npy, NumpyLoadsWhatIsWritten) {
  if (std::system("/usr/bin/python3 -c 'import numpy' > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "Debian's python3-numpy is not installed (scripts/setup.sh installs it)";
  }
  TempDir dir;
  // A non-contiguous view, to check the C-order copy: the transpose of [3, 5].
  const auto t = (torch::arange(15, torch::kFloat64).view({3, 5}) * 0.1 - 0.7).t();
  std::ofstream(dir / "a.npy", std::ios::binary) << npy_bytes(t);
  std::ofstream(dir / "b.npy", std::ios::binary) << npy_bytes(torch::arange(4) * -3);
  const auto script = "import numpy as np; a = np.load('" + (dir / "a.npy") +
                      "'); b = np.load('" + (dir / "b.npy") +
                      "'); print(a.shape, a.dtype, repr(float(a[4, 2])), b.tolist())";
  const auto log = dir / "out.txt";
  ASSERT_EQ(fsa::testing::run_command("/usr/bin/python3 -c \"" + script + "\"", log), 0)
      << fsa::testing::read_text(log);
  // a[4, 2] = t[2][4] before the transpose = 0.1 · 14 − 0.7, as LibTorch computed it in double.
  const double value = t[4][2].item<double>();
  ASSERT_NEAR(value, 0.7, 1e-12);
  EXPECT_EQ(fsa::testing::read_text(log),
            fmt::format("(5, 3) float64 {} [0, -3, -6, -9]\n", value));
}

}  // namespace
}  // namespace fsa::io
