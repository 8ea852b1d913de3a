#include "fsa/io/files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace fsa::io {

namespace {
/// fsync on a path opened read-only (a folder, so that a rename in it is
/// durable); errors are ignored, as some file systems refuse it for folders.
void sync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void write_bytes(const std::string& path, const char* data, size_t size) {
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string tmp = fmt::format("{}{}{}", path, kTemporaryMark, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw std::runtime_error(fmt::format("cannot write '{}': {}", tmp, std::strerror(errno)));
  }
  auto fail = [&](const std::string& what) {
    const std::string reason = std::strerror(errno);
    ::close(fd);
    std::remove(tmp.c_str());
    throw std::runtime_error(fmt::format("{} '{}' failed: {}", what, path, reason));
  };
  for (size_t done = 0; done < size;) {
    const auto n = ::write(fd, data + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("writing");  // ENOSPC: disk full
    }
    done += static_cast<size_t>(n);
  }
  // The bytes reach the disk before the name points at them: a crash or a
  // power cut leaves the old file or the whole new one.
  if (::fsync(fd) != 0) fail("flushing");
  if (::close(fd) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    throw std::runtime_error(fmt::format("closing '{}' failed: {}", path, reason));
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw std::runtime_error(fmt::format("cannot move '{}' into place: {}", path, ec.message()));
  }
  sync_path(target.has_parent_path() ? target.parent_path() : fs::path("."));
}
}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_bytes(path, bytes.data(), bytes.size());
}

void write_file_atomic(const std::string& path, const std::vector<char>& bytes) {
  write_bytes(path, bytes.data(), bytes.size());
}

std::vector<std::string> remove_stale_temporaries(const std::string& folder) {
  std::vector<std::string> removed;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return removed;
  for (const auto& e : fs::directory_iterator(folder, ec)) {
    const auto name = e.path().filename().string();
    const auto at = name.rfind(kTemporaryMark);
    if (at == std::string::npos || !e.is_regular_file(ec)) continue;
    const auto pid_text = name.substr(at + std::strlen(kTemporaryMark));
    if (pid_text.empty() || !std::all_of(pid_text.begin(), pid_text.end(),
                                         [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    const auto pid = std::stol(pid_text);
    // A live process (this one included) may be writing it still.
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM) continue;
    if (fs::remove(e.path(), ec)) removed.push_back(e.path().string());
  }
  return removed;
}

std::string file_problem(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) return "cannot be read: " + ec.message();
  switch (status.type()) {
    case fs::file_type::regular:
      return "";
    case fs::file_type::not_found:
      return "does not exist";
    case fs::file_type::directory:
      return "is a folder, not a file";
    case fs::file_type::fifo:
      return "is a named pipe (FIFO), not a file";
    case fs::file_type::block:
    case fs::file_type::character:
      return "is a device, not a file";
    case fs::file_type::socket:
      return "is a socket, not a file";
    default:
      return "is not a regular file";
  }
}

namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// Whether `name` in a folder is something an fsa command writes there.
bool is_run_output(const std::string& name, bool is_folder) {
  if (is_folder) {
    for (const char* f :
         {"checkpoints", "plot_data", "overlays", "phase_i", "phase_ii", "phase_iii"}) {
      if (name == f) return true;
    }
    return starts_with(name, "decouple_");
  }
  for (const char* f :
       {"config.yaml", "phase_i_config.yaml", "metrics.json", "log.txt", "report.html",
        "confusing_classes.txt", "analysis.pt", "features.pt", "per_class_accuracy.png"}) {
    if (name == f) return true;
  }
  if (starts_with(name, "events.out.tfevents.")) return true;
  if (!ends_with(name, ".png")) return false;
  for (const char* prefix : {"confusion_", "curves_", "contact_", "fusion_"}) {
    if (starts_with(name, prefix)) return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> run_outputs(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return names;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto name = entry.path().filename().string();
    if (is_run_output(name, entry.is_directory(ec))) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> remove_run_outputs(const std::string& dir) {
  auto names = run_outputs(dir);
  for (const auto& name : names) {
    std::error_code ec;
    fs::remove_all(fs::path(dir) / name, ec);
    if (ec) {
      throw std::runtime_error(
          fmt::format("cannot remove '{}': {}", (fs::path(dir) / name).string(), ec.message()));
    }
  }
  return names;
}

std::vector<char> read_file(const std::string& path) {
  if (const auto problem = file_problem(path); !problem.empty()) {
    throw std::runtime_error(fmt::format("'{}' {}", path, problem));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot open '{}'", path));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  if (in.bad()) throw std::runtime_error(fmt::format("error reading '{}'", path));
  return bytes;
}

}  // namespace fsa::io
