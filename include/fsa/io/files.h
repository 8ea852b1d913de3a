// Writing run-folder files safely.
#pragma once

#include <string>
#include <vector>

namespace fsa::io {

/// What marks a temporary file: `path` + kTemporaryMark + the writer's pid.
inline constexpr const char* kTemporaryMark = ".tmp.";

/// Writes `bytes` to `path` via `path.tmp.<pid>`, fsync, a rename and an
/// fsync of the folder: readers (and a machine after a crash or power cut)
/// see the old file or the whole new one, never a part. Creates parent
/// folders. Throws std::runtime_error naming the path on failure (a full
/// disk: "No space left on device"), leaving no temporary file behind.
void write_file_atomic(const std::string& path, const std::string& bytes);
void write_file_atomic(const std::string& path, const std::vector<char>& bytes);

/// Reads a whole file; throws std::runtime_error naming the path if it is
/// missing or not a regular file (file_problem).
std::vector<char> read_file(const std::string& path);

/// Removes the temporary files (write_file_atomic's `*.tmp.<pid>`) in
/// `folder` whose writer is no longer running: a process killed while
/// writing leaves one. Returns the paths removed.
std::vector<std::string> remove_stale_temporaries(const std::string& folder);

/// Why `path` cannot be read as a file of data, or "" if it can: "does not
/// exist", "is a folder, not a file", "is a named pipe (FIFO), not a file",
/// "is a device, not a file", ... (symbolic links are followed). Reading a
/// pipe or a device such as /dev/zero would block or never end, so every
/// reader of configs, data, lists and checkpoints asks this first.
std::string file_problem(const std::string& path);

}  // namespace fsa::io
