#include "fsa/io/event_writer.h"

#include <limits.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <stdexcept>
#include <system_error>

#include "tensorboard.pb.h"

namespace fs = std::filesystem;

namespace fsa::io {

namespace {

constexpr uint32_t kCrc32cPolynomial = 0x82F63B78u;  // 0x1EDC6F41 bit-reversed
constexpr uint32_t kCrcMaskDelta = 0xa282ead8u;
constexpr size_t kHeaderBytes = 12;  // u64 length + u32 masked CRC of it
constexpr size_t kFooterBytes = 4;   // u32 masked CRC of the data

/// table[b] = CRC-32C register after shifting in byte b alone (no pre/post
/// inversion), so one table lookup advances the CRC by a whole byte.
constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1u) ? (c >> 1) ^ kCrc32cPolynomial : c >> 1;
    table[b] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

uint32_t mask_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kCrcMaskDelta; }

void put_u32_le(uint32_t v, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xffu);
}

void put_u64_le(uint64_t v, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xffu);
}

uint64_t get_le(const char* in, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

double unix_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

/// Per-process count of event files opened, like tensorboard's _global_uid.
std::atomic<int64_t> g_file_counter{0};

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = kCrc32cTable[(c ^ p[i]) & 0xffu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) { return mask_crc(crc32c(data, size)); }

EventWriter::EventWriter(const std::string& log_dir, double flush_seconds)
    : flush_seconds_(flush_seconds) {
  if (!(flush_seconds >= 0)) {
    throw std::invalid_argument("EventWriter: flush_seconds must be >= 0, got " +
                                std::to_string(flush_seconds));
  }
  std::error_code ec;
  fs::create_directories(log_dir, ec);
  if (ec || !fs::is_directory(log_dir)) {
    throw std::runtime_error("cannot create TensorBoard log folder '" + log_dir +
                             "': " + (ec ? ec.message() : "not a folder"));
  }
  const double now = unix_seconds();
  char name[64];
  std::snprintf(name, sizeof(name), "events.out.tfevents.%010lld.",
                static_cast<long long>(std::floor(now)));
  path_ = (fs::path(log_dir) / (name + host_name() + "." + std::to_string(::getpid()) + "." +
                                std::to_string(g_file_counter.fetch_add(1))))
              .string();
  file_.open(path_, std::ios::binary | std::ios::out | std::ios::trunc);
  if (!file_) throw std::runtime_error("cannot create TensorBoard event file '" + path_ + "'");

  tensorboard::Event event;
  event.set_wall_time(now);
  event.set_file_version("brain.Event:2");
  std::lock_guard<std::mutex> lock(mutex_);
  write_record(event.SerializeAsString());
  flush_locked();
}

EventWriter::~EventWriter() {
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    file_.flush();
  } catch (...) {
    // A destructor must not throw; flush() reports failures to callers who ask.
  }
}

void EventWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  const double now = unix_seconds();
  tensorboard::Event event;
  event.set_wall_time(now);
  event.set_step(step);
  auto* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
  const std::string data = event.SerializeAsString();

  std::lock_guard<std::mutex> lock(mutex_);
  write_record(data);
  if (now - last_flush_time_ >= flush_seconds_) flush_locked();
}

void EventWriter::flush() {
  std::lock_guard<std::mutex> lock(mutex_);
  flush_locked();
}

void EventWriter::flush_locked() {
  file_.flush();
  if (!file_) throw std::runtime_error("writing TensorBoard event file '" + path_ + "' failed");
  last_flush_time_ = unix_seconds();
}

void EventWriter::write_record(const std::string& data) {
  char header[kHeaderBytes];
  put_u64_le(data.size(), header);
  put_u32_le(masked_crc32c(header, 8), header + 8);
  char footer[kFooterBytes];
  put_u32_le(masked_crc32c(data.data(), data.size()), footer);
  file_.write(header, sizeof(header));
  file_.write(data.data(), static_cast<std::streamsize>(data.size()));
  file_.write(footer, sizeof(footer));
  if (!file_) throw std::runtime_error("writing TensorBoard event file '" + path_ + "' failed");
}

std::vector<std::string> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open event file '" + path + "'");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error("cannot read event file '" + path + "'");

  std::vector<std::string> records;
  size_t offset = 0;
  while (offset < bytes.size()) {
    const std::string where = "'" + path + "': record at byte offset " + std::to_string(offset);
    const size_t left = bytes.size() - offset;
    if (left < kHeaderBytes) {
      throw std::runtime_error("truncated event file " + where + ": " + std::to_string(left) +
                               " bytes left, a record header needs 12");
    }
    const char* header = bytes.data() + offset;
    if (get_le(header + 8, 4) != masked_crc32c(header, 8)) {
      throw std::runtime_error("corrupt event file " + where + ": length CRC-32C mismatch");
    }
    const uint64_t length = get_le(header, 8);
    if (left - kHeaderBytes < kFooterBytes || length > left - kHeaderBytes - kFooterBytes) {
      throw std::runtime_error("truncated event file " + where + ": declares " +
                               std::to_string(length) + " data bytes, " + std::to_string(left) +
                               " bytes left including framing");
    }
    const char* data = header + kHeaderBytes;
    if (get_le(data + length, 4) != masked_crc32c(data, length)) {
      throw std::runtime_error("corrupt event file " + where + ": data CRC-32C mismatch");
    }
    records.emplace_back(data, length);
    offset += kHeaderBytes + length + kFooterBytes;
  }
  return records;
}

std::vector<ScalarEvent> read_scalar_events(const std::string& path) {
  const std::vector<std::string> records = read_records(path);
  std::vector<ScalarEvent> out;
  size_t offset = 0;
  for (const std::string& data : records) {
    tensorboard::Event event;
    if (!event.ParseFromString(data)) {
      throw std::runtime_error("'" + path + "': record at byte offset " + std::to_string(offset) +
                               " is not a valid tensorboard Event");
    }
    if (event.has_summary()) {
      for (const auto& v : event.summary().value()) {
        if (v.value_case() != tensorboard::Summary::Value::kSimpleValue) continue;
        out.push_back(
            {v.tag(), static_cast<double>(v.simple_value()), event.step(), event.wall_time()});
      }
    }
    offset += kHeaderBytes + data.size() + kFooterBytes;
  }
  return out;
}

}  // namespace fsa::io
