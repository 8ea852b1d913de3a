// Writing run-folder files safely.
#pragma once

#include <string>
#include <vector>

namespace fsa::io {

/// Writes `bytes` to `path` via `path.tmp` and a rename: readers see the old
/// file or the whole new one, never a part. Creates parent folders. Throws
/// std::runtime_error naming the path on failure.
void write_file_atomic(const std::string& path, const std::string& bytes);
void write_file_atomic(const std::string& path, const std::vector<char>& bytes);

/// Reads a whole file; throws std::runtime_error naming the path if missing.
std::vector<char> read_file(const std::string& path);

}  // namespace fsa::io
