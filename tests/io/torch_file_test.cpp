// torch.save files: fsa's writer against its reader, against PyTorch's own
// reader and writer (Debian's python3-torch), and the reader against damaged
// and hostile pickles.
#include "fsa/io/torch_file.h"

#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <climits>
#include <filesystem>

#include "fsa/io/files.h"
#include "test_util.h"

namespace fsa::io {
namespace {

using fsa::testing::error_message;
using fsa::testing::TempDir;
using namespace std::string_literals;

/// Every kind of value the writer takes, tensors of every layout it must flatten.
c10::impl::GenericDict sample() {
  torch::manual_seed(3);
  auto d = c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
  d.insert("f32", torch::randn({3, 4}));
  d.insert("f64", torch::randn({2}, torch::kDouble));
  d.insert("i64", torch::tensor({int64_t(1) << 40, int64_t(-5), INT64_MIN}));
  d.insert("u8", torch::arange(0, 256, torch::kLong).to(torch::kUInt8));
  d.insert("bool", torch::tensor({true, false, true}));
  d.insert("bf16", torch::randn({5}).to(torch::kBFloat16));
  d.insert("empty", torch::zeros({0, 3}));
  d.insert("transposed", torch::randn({4, 3}).t());                    // not contiguous
  d.insert("slice", torch::arange(10, torch::kFloat).slice(0, 2, 5));  // offset 2
  d.insert("scalar", torch::tensor(2.5));
  d.insert("small", int64_t(7));
  d.insert("negative", int64_t(-7));
  d.insert("int32_edge", int64_t(INT32_MIN));
  d.insert("big", int64_t(1) << 40);
  d.insert("min", INT64_MIN);
  d.insert("max", INT64_MAX);
  d.insert("double", 0.1);
  d.insert("text", std::string("héllo, 🌍"));
  d.insert("none", c10::IValue());
  d.insert("yes", true);
  d.insert("no", false);
  c10::impl::GenericList list(c10::AnyType::get());
  list.push_back(int64_t(1));
  list.push_back(std::string("a"));
  list.push_back(torch::ones({2}));
  d.insert("list", list);
  d.insert("empty_list", c10::impl::GenericList(c10::AnyType::get()));
  auto inner = c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
  inner.insert("lr", 0.05);
  d.insert("nested", inner);
  return d;
}

/// Value equality, tensors by dtype, shape and contents.
void expect_same(const c10::IValue& a, const c10::IValue& b, const std::string& where) {
  SCOPED_TRACE(where);
  if (a.isTensor()) {
    ASSERT_TRUE(b.isTensor());
    const auto& x = a.toTensor();
    const auto& y = b.toTensor();
    EXPECT_EQ(x.scalar_type(), y.scalar_type());
    ASSERT_EQ(x.sizes(), y.sizes());
    EXPECT_TRUE(torch::equal(x, y));
  } else if (a.isList()) {
    ASSERT_TRUE(b.isList());
    const auto x = a.toListRef();
    const auto y = b.toListRef();
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i)
      expect_same(x[i], y[i], where + "[" + std::to_string(i) + "]");
  } else if (a.isGenericDict()) {
    ASSERT_TRUE(b.isGenericDict());
    const auto x = a.toGenericDict();
    const auto y = b.toGenericDict();
    ASSERT_EQ(x.size(), y.size());
    auto i = x.begin();
    auto j = y.begin();
    for (; i != x.end(); ++i, ++j) {  // insertion order kept
      ASSERT_EQ(i->key().toStringRef(), j->key().toStringRef());
      expect_same(i->value(), j->value(), where + "." + i->key().toStringRef());
    }
  } else {
    EXPECT_EQ(a.tagKind(), b.tagKind());
    EXPECT_TRUE(a == b) << a << " vs " << b;
  }
}

TEST(TorchFile, WhatTheWriterWritesTheReaderReadsBack) {
  TempDir dir;
  const auto d = sample();
  write_file_atomic(dir / "x.pt", torch_save_bytes(d));
  expect_same(d, with_doubles(read_torch_file(dir / "x.pt")), "x");
}

TEST(TorchFile, PyTorchReadsItWithWeightsOnlyAndWritesTheSameValuesBack) {
  TempDir dir;
  const auto d = sample();
  write_file_atomic(dir / "fsa.pt", torch_save_bytes(d));
  // Through PyTorch's restricted reader and back out through its own writer.
  const std::string cmd =
      "/usr/bin/python3 -c \"import sys, torch; torch.save(torch.load(sys.argv[1], "
      "weights_only=True), sys.argv[2])\" " +
      dir / "fsa.pt" + " " + dir / "python.pt";
  ASSERT_EQ(fsa::testing::run_command(cmd, dir / "python.log"), 0)
      << fsa::testing::read_text(dir / "python.log");
  expect_same(d, with_doubles(read_torch_file(dir / "python.pt")), "python");
}

TEST(TorchFile, ValuesWithoutAPlainPickleAreRefused) {
  const auto tuple = c10::ivalue::Tuple::create({c10::IValue(int64_t(1))});
  const auto msg = error_message<std::invalid_argument>([&] { torch_save_bytes(tuple); });
  EXPECT_NE(msg.find("Tuple"), std::string::npos) << msg;
}

/// A zip as torch.save writes it, around a pickle of our own making.
void write_zip(const std::string& path, const std::string& pickle,
               const std::vector<std::pair<std::string, std::string>>& records = {}) {
  std::vector<char> bytes;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&bytes](const void* data, size_t size) {
      const auto* p = static_cast<const char*>(data);
      bytes.insert(bytes.end(), p, p + size);
      return size;
    });
    const auto data = std::string("\x80\x02", 2) + pickle;
    writer.writeRecord("data.pkl", data.data(), data.size());
    for (const auto& [name, content] : records) {
      writer.writeRecord(name, content.data(), content.size());
    }
    writer.writeEndOfFile();
  }
  write_file_atomic(path, bytes);
}

/// SHORT_BINUNICODE of s.
std::string str(const std::string& s) { return "\x8c" + std::string(1, char(s.size())) + s; }

TEST(TorchFile, DamagedAndHostilePicklesAreRefusedNamingTheFile) {
  TempDir dir;
  // ('storage', torch.FloatStorage, '0', 'cpu', 2): a storage of two floats.
  const std::string storage =
      "(" + str("storage") + "ctorch\nFloatStorage\n" + str("0") + str("cpu") + "K\x02tQ";
  const std::string rebuild = "ctorch._utils\n_rebuild_tensor_v2\n(" + storage + "K\x00"s;
  const std::string two_floats(8, '\0');
  struct Case {
    const char* name;
    std::string pickle;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"empty_stack", ".", "bad stack at STOP"},
      {"no_stop", "}K\x01K\x02s", "truncated data"},
      {"odd_setitems", "}(K\x01u.", "SETITEMS of an odd number of items"},
      {"setitems_without_dict", "K\x05(K\x01K\x02u.", "SETITEM(S) on a non-dict"},
      {"no_mark", "K\x01t.", "no MARK"},
      {"unknown_opcode", "\xff", "unsupported opcode 0xff"},
      {"bad_memo", "h\x05.", "bad memo reference"},
      {"short_persistent_id", "(" + str("storage") + "tQ.", "unsupported persistent id"},
      {"os_system", "cos\nsystem\n(" + str("touch " + dir / "pwned") + "tR.", "<os.system object>"},
      {"global_posing_string", str("\x01GLOBAL\x01os system") + ".", "posing as a global"},
      {"tensor_past_its_storage", rebuild + "(K\x64t(K\x01t\x89NtR.", "is not a readable"},
      {"negative_stride", rebuild + "(K\x02t(J\xff\xff\xff\xfft\x89NtR.", "negative"},
      {"huge_storage",
       "ctorch._utils\n_rebuild_tensor_v2\n((" + str("storage") + "ctorch\nFloatStorage\n" +
           str("0") + str("cpu") +
           "\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7ftQK\x00(K\x01t(K\x01t"
           "\x89NtR."s,
       "impossible storage size"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto path = dir / (std::string(c.name) + ".pt");
    write_zip(path, c.pickle, {{"data/0", two_floats}});
    const auto msg = error_message<std::runtime_error>([&] { read_torch_file(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expected), std::string::npos) << msg;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "pwned"));

  // The well-formed tensor the cases above damage reads as two zeros.
  write_zip(dir / "good.pt", rebuild + "(K\x02t(K\x01t\x89NtR.", {{"data/0", two_floats}});
  EXPECT_TRUE(torch::equal(read_torch_file(dir / "good.pt").toTensor(), torch::zeros({2})));
}

TEST(TorchFile, AFolderOrAPipeIsNamedNotRead) {
  TempDir dir;
  const auto folder = error_message<std::runtime_error>([&] { read_torch_file(dir.path()); });
  EXPECT_NE(folder.find("is a folder"), std::string::npos) << folder;
}

}  // namespace
}  // namespace fsa::io
