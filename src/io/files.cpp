#include "fsa/io/files.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace fsa::io {

namespace {
void write_bytes(const std::string& path, const char* data, size_t size) {
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(fmt::format("cannot write '{}'", tmp));
    out.write(data, static_cast<std::streamsize>(size));
    out.flush();
    if (!out) {
      out.close();
      std::remove(tmp.c_str());
      throw std::runtime_error(fmt::format("writing '{}' failed (disk full?)", path));
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw std::runtime_error(fmt::format("cannot move '{}' into place: {}", path, ec.message()));
  }
}
}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_bytes(path, bytes.data(), bytes.size());
}

void write_file_atomic(const std::string& path, const std::vector<char>& bytes) {
  write_bytes(path, bytes.data(), bytes.size());
}

std::vector<char> read_file(const std::string& path) {
  if (std::filesystem::is_directory(path)) {
    throw std::runtime_error(fmt::format("'{}' is a folder, not a file", path));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot open '{}'", path));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  if (in.bad()) throw std::runtime_error(fmt::format("error reading '{}'", path));
  return bytes;
}

}  // namespace fsa::io
