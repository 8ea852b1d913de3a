#include "fsa/io/event_writer.h"

#include <gtest/gtest.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace fsa::io {
namespace {

/// CRC-32C one bit at a time straight from the polynomial (RFC 3720 §B.4),
/// independent of the table the library uses.
uint32_t bitwise_crc32c(const std::string& bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char byte : bytes) {
    c ^= byte;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}

uint32_t bitwise_masked(const std::string& bytes) {
  const uint32_t c = bitwise_crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

uint64_t le(const std::string& bytes, size_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
  return v;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

/// A protobuf wire-format reader just big enough to check field numbers and
/// wire types by hand, without the generated code.
struct Wire {
  const std::string& s;
  size_t at = 0;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      const auto b = static_cast<unsigned char>(s.at(at++));
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  }
  std::string bytes(size_t n) {
    std::string out = s.substr(at, n);
    at += n;
    return out;
  }
};

class EventWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = (fs::temp_directory_path() /
            ("fsa_event_writer_" + std::to_string(::getpid()) + "_" + info->name()))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  /// Writes the file used by the corruption tests: header + 3 scalars.
  std::string write_small_file() {
    EventWriter w(dir_);
    w.add_scalar("loss/train", 0.5, 1);
    w.add_scalar("acc/test", 0.25, 2);
    w.add_scalar("loss/train", 0.125, 3);
    return w.path();
  }

  std::string dir_;
};

TEST(Crc32c, MatchesPublishedCheckValues) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  // RFC 3720 §B.4.
  std::vector<unsigned char> buf(32, 0x00);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x8A9136AAu);
  std::fill(buf.begin(), buf.end(), 0xFF);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(i);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x46DD794Eu);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(31 - i);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x113FDB5Cu);
}

TEST(Crc32c, TableAgreesWithBitwiseDefinitionAndMaskFormula) {
  std::mt19937 rng(7);
  for (size_t n : {1, 2, 3, 8, 13, 64, 1000}) {
    std::string bytes(n, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
    EXPECT_EQ(crc32c(bytes.data(), n), bitwise_crc32c(bytes)) << n;
    EXPECT_EQ(masked_crc32c(bytes.data(), n), bitwise_masked(bytes)) << n;
  }
}

TEST_F(EventWriterTest, CreatesFolderAndNamesFileLikeSummaryWriter) {
  const std::string nested = dir_ + "/a/b";
  const auto before = static_cast<long long>(std::time(nullptr));
  EventWriter first(nested);
  EventWriter second(nested);
  const auto after = static_cast<long long>(std::time(nullptr));
  ASSERT_TRUE(fs::is_directory(nested));
  ASSERT_TRUE(fs::exists(first.path()));
  EXPECT_EQ(fs::path(first.path()).parent_path(), fs::path(nested));

  char host[HOST_NAME_MAX + 1] = {};
  ASSERT_EQ(::gethostname(host, HOST_NAME_MAX), 0);
  const std::string prefix = "events.out.tfevents.";
  const std::string name = fs::path(first.path()).filename().string();
  ASSERT_EQ(name.rfind(prefix, 0), 0u) << name;
  const std::string seconds = name.substr(prefix.size(), 10);
  ASSERT_EQ(seconds.find_first_not_of("0123456789"), std::string::npos) << name;
  EXPECT_GE(std::stoll(seconds), before);
  EXPECT_LE(std::stoll(seconds), after);
  const std::string rest = name.substr(prefix.size() + 10);
  const std::string middle = "." + std::string(host) + "." + std::to_string(::getpid()) + ".";
  ASSERT_EQ(rest.rfind(middle, 0), 0u) << name;
  const std::string counter = rest.substr(middle.size());
  ASSERT_FALSE(counter.empty());
  ASSERT_EQ(counter.find_first_not_of("0123456789"), std::string::npos) << name;

  const std::string second_name = fs::path(second.path()).filename().string();
  const std::string second_counter = second_name.substr(second_name.rfind('.') + 1);
  EXPECT_EQ(std::stoll(second_counter), std::stoll(counter) + 1);
}

TEST_F(EventWriterTest, FirstRecordIsFileVersion) {
  const double before = static_cast<double>(std::time(nullptr));
  EventWriter w(dir_);
  // Readable before any flush() or destruction: the constructor flushes it.
  const auto records = read_records(w.path());
  ASSERT_EQ(records.size(), 1u);

  // Decoded by hand: wall_time is field 1, fixed64 (tag 0x09); file_version
  // field 3, length-delimited (tag 0x1a); nothing else.
  Wire event{records[0]};
  EXPECT_EQ(event.varint(), (1u << 3) | 1);
  double wall_time;
  const std::string wall_bytes = event.bytes(8);
  std::memcpy(&wall_time, wall_bytes.data(), 8);
  EXPECT_GE(wall_time, before);
  EXPECT_LE(wall_time, static_cast<double>(std::time(nullptr)) + 1);
  EXPECT_EQ(event.varint(), (3u << 3) | 2);
  EXPECT_EQ(event.bytes(event.varint()), "brain.Event:2");
  EXPECT_EQ(event.at, records[0].size());
  EXPECT_TRUE(read_scalar_events(w.path()).empty());
}

TEST_F(EventWriterTest, FramingIsTfRecordByHand) {
  const std::string path = write_small_file();
  const std::string bytes = slurp(path);
  size_t at = 0;
  int count = 0;
  while (at < bytes.size()) {
    ASSERT_LE(at + 12, bytes.size());
    const uint64_t length = le(bytes, at, 8);
    EXPECT_EQ(le(bytes, at + 8, 4), bitwise_masked(bytes.substr(at, 8)));
    ASSERT_LE(at + 12 + length + 4, bytes.size());
    EXPECT_EQ(le(bytes, at + 12 + length, 4), bitwise_masked(bytes.substr(at + 12, length)));
    at += 12 + length + 4;
    ++count;
  }
  EXPECT_EQ(at, bytes.size());
  EXPECT_EQ(count, 4);
}

TEST_F(EventWriterTest, ScalarEventUsesTensorFlowFieldNumbers) {
  std::string path;
  {
    EventWriter w(dir_);
    w.add_scalar("loss/train", 0.75, 300);
    path = w.path();
  }
  const auto records = read_records(path);
  ASSERT_EQ(records.size(), 2u);
  Wire event{records[1]};
  EXPECT_EQ(event.varint(), (1u << 3) | 1);  // wall_time: field 1, fixed64
  double wall_time;
  const std::string wall_bytes = event.bytes(8);
  std::memcpy(&wall_time, wall_bytes.data(), 8);
  EXPECT_GT(wall_time, 1.5e9);
  EXPECT_EQ(event.varint(), (2u << 3) | 0);  // step: field 2, varint
  EXPECT_EQ(event.varint(), 300u);
  EXPECT_EQ(event.varint(), (5u << 3) | 2);  // summary: field 5, length-delimited
  const std::string summary_bytes = event.bytes(event.varint());
  EXPECT_EQ(event.at, records[1].size());

  Wire summary{summary_bytes};
  EXPECT_EQ(summary.varint(), (1u << 3) | 2);  // value: field 1, repeated message
  const std::string value_bytes = summary.bytes(summary.varint());
  EXPECT_EQ(summary.at, summary_bytes.size());

  Wire value{value_bytes};
  EXPECT_EQ(value.varint(), (1u << 3) | 2);  // tag: field 1, string
  EXPECT_EQ(value.bytes(value.varint()), "loss/train");
  EXPECT_EQ(value.varint(), (2u << 3) | 5);  // simple_value: field 2, fixed32
  float simple;
  const std::string float_bytes = value.bytes(4);
  std::memcpy(&simple, float_bytes.data(), 4);
  EXPECT_EQ(simple, 0.75f);
  EXPECT_EQ(value.at, value_bytes.size());
}

TEST_F(EventWriterTest, ScalarsRoundTrip) {
  struct Row {
    std::string tag;
    double value;
    int64_t step;
  };
  const std::vector<Row> rows = {
      {"loss/train", 0.5300000190734863, 0},  {"acc/test", 0.81, 0},
      {"loss/train", 1.0 / 3.0, 1},           {"lr", 1e-4, 1},
      {"loss/train", -2.5, int64_t{1} << 40}, {"acc/test", 1e30, -7},
  };
  const double before = static_cast<double>(std::time(nullptr));
  std::string path;
  {
    EventWriter w(dir_, /*flush_seconds=*/1e9);
    for (const auto& r : rows) w.add_scalar(r.tag, r.value, r.step);
    w.flush();
    path = w.path();
    ASSERT_EQ(read_scalar_events(path).size(), rows.size());
  }
  const auto events = read_scalar_events(path);
  ASSERT_EQ(events.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(events[i].tag, rows[i].tag) << i;
    EXPECT_EQ(events[i].value, static_cast<double>(static_cast<float>(rows[i].value))) << i;
    EXPECT_EQ(events[i].step, rows[i].step) << i;
    EXPECT_GE(events[i].wall_time, before) << i;
    EXPECT_LE(events[i].wall_time, static_cast<double>(std::time(nullptr)) + 1) << i;
  }
}

TEST_F(EventWriterTest, NonFiniteValuesSurvive) {
  std::string path;
  {
    EventWriter w(dir_);
    w.add_scalar("x", std::nan(""), 0);
    w.add_scalar("x", 1e300, 1);  // beyond float: +inf
    path = w.path();
  }
  const auto events = read_scalar_events(path);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_TRUE(std::isnan(events[0].value));
  EXPECT_TRUE(std::isinf(events[1].value) && events[1].value > 0);
}

TEST_F(EventWriterTest, DestructorFlushes) {
  std::string path;
  {
    EventWriter w(dir_, /*flush_seconds=*/1e9);
    for (int i = 0; i < 5; ++i) w.add_scalar("loss/train", i, i);
    path = w.path();
  }
  const auto events = read_scalar_events(path);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events.back().step, 4);
}

TEST_F(EventWriterTest, ConcurrentWritersProduceWholeRecords) {
  std::string path;
  {
    EventWriter w(dir_);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&w, t] {
        for (int i = 0; i < 250; ++i) w.add_scalar("thread/" + std::to_string(t), i, i);
      });
    }
    for (auto& th : threads) th.join();
    path = w.path();
  }
  EXPECT_EQ(read_scalar_events(path).size(), 1000u);
}

TEST_F(EventWriterTest, EveryCorruptedByteIsDetected) {
  const std::string path = write_small_file();
  const std::string good = slurp(path);
  ASSERT_EQ(read_scalar_events(path).size(), 3u);
  const size_t second_record = 12 + le(good, 0, 8) + 4;
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    spit(path, bad);
    try {
      read_scalar_events(path);
      ADD_FAILURE() << "flipped byte " << i << " not detected";
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find("byte offset"), std::string::npos) << msg;
      EXPECT_NE(msg.find("CRC"), std::string::npos) << msg;
      if (i >= second_record && i < second_record + 12) {
        EXPECT_NE(msg.find("byte offset " + std::to_string(second_record) + ":"), std::string::npos)
            << msg;
      }
    }
  }
}

TEST_F(EventWriterTest, TruncationIsDetectedAndRecordBoundariesAreNot) {
  const std::string path = write_small_file();
  const std::string good = slurp(path);
  std::vector<size_t> boundaries;
  for (size_t at = 0; at < good.size(); at += 12 + le(good, at, 8) + 4) boundaries.push_back(at);
  for (size_t n = 1; n < good.size(); ++n) {
    spit(path, good.substr(0, n));
    const bool boundary = std::find(boundaries.begin(), boundaries.end(), n) != boundaries.end();
    if (boundary) {
      EXPECT_NO_THROW(read_records(path)) << n;
      continue;
    }
    try {
      read_records(path);
      ADD_FAILURE() << "truncation to " << n << " bytes not detected";
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find("byte offset"), std::string::npos) << msg;
    }
  }
}

TEST_F(EventWriterTest, ErrorsNameThePath) {
  EXPECT_THROW(read_records(dir_ + "/missing"), std::runtime_error);
  fs::create_directories(dir_);
  const std::string file = dir_ + "/not_a_folder";
  spit(file, "x");
  try {
    EventWriter w(file);
    ADD_FAILURE() << "a file accepted as log folder";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
  }
  EXPECT_THROW(EventWriter(dir_, -1.0), std::invalid_argument);
}

TEST_F(EventWriterTest, GarbageWithValidFramingIsRejectedByScalarReader) {
  fs::create_directories(dir_);
  const std::string path = dir_ + "/garbage";
  const std::string data = "\xff\xff\xff";  // field 0x1fffff... with an unterminated varint
  std::string record(12, '\0');
  for (int i = 0; i < 8; ++i) record[i] = static_cast<char>((data.size() >> (8 * i)) & 0xff);
  const uint32_t lc = bitwise_masked(record.substr(0, 8));
  for (int i = 0; i < 4; ++i) record[8 + i] = static_cast<char>((lc >> (8 * i)) & 0xff);
  record += data;
  const uint32_t dc = bitwise_masked(data);
  for (int i = 0; i < 4; ++i) record += static_cast<char>((dc >> (8 * i)) & 0xff);
  spit(path, record);
  EXPECT_EQ(read_records(path).size(), 1u);
  EXPECT_THROW(read_scalar_events(path), std::runtime_error);
}

}  // namespace
}  // namespace fsa::io
