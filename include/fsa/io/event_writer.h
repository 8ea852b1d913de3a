// TensorBoard event files: a writer for scalar series and a verifying reader.
//
// The format is TensorFlow's (CONVENTIONS.md, TensorBoard): a file of TFRecord
// records, each
//   u64 little-endian length | u32 masked CRC-32C of those 8 bytes |
//   data (a serialised tensorboard.Event) | u32 masked CRC-32C of the data,
// the first record holding Event{wall_time, file_version: "brain.Event:2"}.
// Files are named like those of torch.utils.tensorboard.SummaryWriter, so
// TensorBoard shows every folder holding one as a run named by its path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

namespace fsa::io {

/// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78, initial value and
/// final XOR 0xFFFFFFFF), the checksum of RFC 3720 §B.4 and of TFRecord.
/// crc32c("123456789", 9) == 0xE3069283.
uint32_t crc32c(const void* data, size_t size);

/// The TFRecord checksum: c = crc32c(data, size), then
/// ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32). TensorFlow masks CRCs that
/// are stored next to the data they cover (tensorflow/core/lib/hash/crc32c.h).
uint32_t masked_crc32c(const void* data, size_t size);

/// One scalar read back from an event file.
struct ScalarEvent {
  std::string tag;       ///< series name, e.g. "loss/train"
  double value = 0;      ///< the stored float32 widened to double
  int64_t step = 0;      ///< the Event's global step
  double wall_time = 0;  ///< seconds since the Unix epoch
};

/// Appends scalar summaries to a new TensorBoard event file.
///
/// Usage:
///   fsa::io::EventWriter events(run_dir + "/tb");
///   events.add_scalar("loss/train", 0.53, /*step=*/epoch);
///   events.flush();  // at the end of an epoch; the destructor flushes too
///
/// Thread-safe: add_scalar and flush may be called from several threads.
/// Neither copyable nor movable (hold it in a std::optional or unique_ptr).
class EventWriter {
 public:
  /// Creates `log_dir` (and its parents) if missing and a new file in it named
  /// events.out.tfevents.<10-digit Unix seconds>.<hostname>.<pid>.<n>, n
  /// counting the writers this process has opened from 0 (the convention of
  /// tensorboard's EventFileWriter, used by torch.utils.tensorboard), then
  /// writes and flushes the file_version record. Records written later are
  /// buffered and reach the file on flush(), on destruction, or at the first
  /// add_scalar at least `flush_seconds` (wall-clock seconds) after the last
  /// flush; SummaryWriter's flush_secs default is 120.
  /// Throws std::runtime_error naming the folder or file if either cannot be
  /// created, std::invalid_argument if flush_seconds is negative or NaN.
  explicit EventWriter(const std::string& log_dir, double flush_seconds = 120);

  /// Flushes; never throws (a failure here is lost, call flush() to see it).
  ~EventWriter();

  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  /// Writes Event{wall_time: now, step, summary: {value: [{tag, simple_value}]}}.
  /// `value` is stored as float32, the type TensorBoard reads (values beyond
  /// float's range become ±inf; NaN stays NaN). Throws std::runtime_error
  /// naming the file if writing fails (e.g. disk full).
  void add_scalar(const std::string& tag, double value, int64_t step);

  /// Pushes buffered records to the operating system. Throws
  /// std::runtime_error naming the file if writing fails.
  void flush();

  /// Path of the event file: log_dir joined with the file name.
  const std::string& path() const { return path_; }

 private:
  /// Frames `data` as a TFRecord and appends it; caller holds mutex_.
  void write_record(const std::string& data);
  void flush_locked();

  std::string path_;
  double flush_seconds_;
  double last_flush_time_ = 0;  ///< Unix seconds
  std::ofstream file_;
  std::mutex mutex_;
};

/// The data of every record in a TFRecord file, in order, each checked
/// against its length CRC and data CRC. Throws std::runtime_error naming the
/// file and the byte offset of the record on a CRC mismatch or a truncated
/// record, or naming the file if it cannot be opened.
std::vector<std::string> read_records(const std::string& path);

/// Every Summary.Value with a simple_value in a TensorBoard event file, in
/// file order (the file_version record and other values are skipped). Throws
/// what read_records throws, and std::runtime_error naming the file and byte
/// offset of a record whose data is not a valid Event.
std::vector<ScalarEvent> read_scalar_events(const std::string& path);

}  // namespace fsa::io
