// The run report (issue 4, "See it"): a run folder's metrics.json drawn as
// PNG plots (through gnuplot) and one offline HTML page. Needs neither
// LibTorch nor a display; see docs/REPORTS.md for the files it writes.
#pragma once

#include <string>
#include <vector>

namespace fsa::io {

/// How to write a report. The defaults write next to metrics.json and find
/// gnuplot on PATH.
struct ReportOptions {
  /// Folder to write into; empty means the run folder itself. Created if
  /// missing. Image paths in report.html are relative to it.
  std::string out_dir;
  /// The gnuplot program: a name looked up on PATH or a path. A program that
  /// cannot be run leaves the plots out (ReportFiles::missing) instead of
  /// failing the report.
  std::string gnuplot = "gnuplot";
};

/// An image the report wanted but could not draw, and why.
struct MissingImage {
  std::string file;    ///< file name, e.g. "curves_phase_iii.png"
  std::string reason;  ///< e.g. "gnuplot not found ('gnuplot'): install gnuplot-nox"
};

/// What write_report wrote. All paths are absolute or as given.
struct ReportFiles {
  std::string html;                   ///< <out_dir>/report.html
  std::vector<std::string> images;    ///< the PNGs drawn, each checked to be a PNG
  std::vector<MissingImage> missing;  ///< PNGs that are not there, with the reason
  /// The gnuplot inputs (<out_dir>/plot_data/*.dat, *.gp), kept so that a plot
  /// can be redrawn or restyled by hand: `gnuplot plot_data/per_class.gp`.
  std::vector<std::string> plot_inputs;
  /// Parts of the report left out because the run has no data for them
  /// (no Phase III, no confusion matrix, no history), one sentence each.
  std::vector<std::string> notes;
  /// Contact sheets of class activation maps found in out_dir
  /// (contact_<c>_<name>.png, written by `fsa visualize` and `fsa run`), file
  /// names in class order; report.html shows them in their own section.
  std::vector<std::string> contact_sheets;
};

/// Reads `<run_dir>/metrics.json` (written by `fsa run`, `fsa phase-i`,
/// `fsa phase-iii`, `fsa test`: the keys "phase_i", "phase_iii" and/or
/// "test") and writes into `options.out_dir` (default: run_dir):
///  - per_class_accuracy.png: per-class top-1 of each phase as grouped bars,
///    classes ordered by training-set size (descending, ties by index), with
///    the training-set size on a log-scaled second axis;
///  - confusion_<phase>.png: the row-normalised confusion matrix of each phase
///    that has one (rows: true class), same class order;
///  - curves_<phase>.png: loss, top-1 and learning rate per epoch;
///  - report.html: header, metric table (phases side by side with the change
///    in percentage points), per-class table, the images above, and any CAM
///    contact sheets (contact_*.png) already in out_dir.
/// Accuracies in metrics.json are fractions in [0, 1]; the report shows
/// percentages. Parts the run lacks are skipped and listed in `notes`; plots
/// gnuplot could not draw are listed in `missing` and report.html says so.
///
/// Throws std::runtime_error naming the file and the offending key when
/// metrics.json is missing, is not JSON, or holds a value of the wrong type or
/// length (e.g. "phase_i.per_class has 9 entries, expected 10"), and when an
/// output file cannot be written.
///
/// Example:
///   auto files = fsa::io::write_report("runs/cifar10_if100");
///   for (const auto& m : files.missing) spdlog::warn("{}: {}", m.file, m.reason);
ReportFiles write_report(const std::string& run_dir, const ReportOptions& options = {});

/// As above, writing into `out_dir` instead of the run folder.
ReportFiles write_report(const std::string& run_dir, const std::string& out_dir);

}  // namespace fsa::io
