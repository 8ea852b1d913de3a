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

/// The entries of folder `dir` that fsa's commands write, sorted by name:
/// config.yaml, phase_i_config.yaml, metrics.json, log.txt, report.html,
/// confusing_classes.txt, analysis.pt, features.pt, the folders checkpoints/,
/// plot_data/ and overlays/, a pipeline's phase_i/, phase_ii/, phase_iii/ and
/// decouple_*/, TensorBoard event files (events.out.tfevents.*) and the
/// report's and visualize's figures (per_class_accuracy.png, confusion_*.png,
/// curves_*.png, contact_*.png, fusion_*.png). Other entries (a log the
/// user redirected there) are not listed. Empty if `dir` does not exist.
std::vector<std::string> run_outputs(const std::string& dir);

/// Removes run_outputs(dir) (folders with their contents) and returns their
/// names. Throws std::runtime_error naming the entry that cannot be removed.
std::vector<std::string> remove_run_outputs(const std::string& dir);

}  // namespace fsa::io
