// Console progress of a loop of steps (an epoch of batches): a bar redrawn in
// place on a terminal, a line per tenth of the loop in a log file.
#pragma once

#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <string>

namespace fsa::io {

/// Reports a loop's progress: steps done, images per second, running
/// statistics, elapsed time and time left.
///
/// Usage:
///   fsa::io::Progress progress("phase_i epoch 3/8", loader_steps);
///   for (int64_t i = 0; i < loader_steps; ++i) {
///     ...
///     progress.update(i + 1, batch_size, {{"loss", loss}, {"acc", acc}});
///   }
///   progress.finish();
///
/// Rates are averages since construction: images/s = images so far / elapsed,
/// time left = elapsed / steps done × steps remaining. Not thread-safe.
class Progress {
 public:
  enum class Mode {
    kAuto,   ///< kBar if the stream is std::cerr/std::clog (std::cout) and
             ///< stderr (stdout) is a terminal, otherwise kLines
    kBar,    ///< one line redrawn in place with '\r'; '\n' only at finish()
    kLines,  ///< one plain line each time the loop crosses a 10% boundary
    kQuiet,  ///< nothing
  };

  /// Seconds from any fixed origin, non-decreasing (default: steady_clock).
  using Clock = std::function<double()>;

  /// Minimum wall time between two redraws of the bar, seconds; the first
  /// update, the last step and finish() always redraw.
  static constexpr double kBarRedrawSeconds = 0.1;
  /// Bar width in characters, brackets excluded.
  static constexpr int kBarWidth = 20;

  /// `label` leads every line ("phase_i epoch 3/8"); `total_steps` is the
  /// number of update() calls a full loop makes. The clock is read once here:
  /// elapsed time counts from construction. Throws std::invalid_argument if
  /// total_steps < 1.
  Progress(std::string label, int64_t total_steps, std::ostream& out = std::cerr,
           Mode mode = Mode::kAuto, Clock clock = {});

  /// Calls finish() (never throws), so an unwinding loop leaves a whole line.
  ~Progress();

  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Records that `step_done` steps of total_steps are done (a count, not an
  /// index: 1 after the first step), `images_in_step` images in the step just
  /// done, and the statistics to show, printed as name=value in name order
  /// with 4 significant digits. step_done is clamped to [0, total_steps].
  ///
  /// kLines prints a line when the step crosses one or more 10% boundaries
  /// (step_done × 10 ≥ k × total_steps, k = 1..10): one line per update that
  /// crosses any, showing the actual step and percentage, so at most 10 lines
  /// per loop, exactly 10 when total_steps ≥ 10 and every step is reported,
  /// and as many as steps when total_steps < 10 (7 steps: at 14, 28, 42, 57,
  /// 71, 85 and 100%). The last line is the one at 100%.
  void update(int64_t step_done, int64_t images_in_step,
              const std::map<std::string, double>& stats = {});

  /// Ends the report: kBar redraws the final state and ends the line with
  /// '\n'; kLines and kQuiet print nothing. Later calls, and later updates,
  /// do nothing.
  void finish();

  /// The mode in use, kAuto resolved.
  Mode mode() const { return mode_; }
  /// Seconds from construction to the last update().
  double elapsed_seconds() const { return elapsed_; }
  /// Images per second over the whole loop so far; 0 before time has passed.
  double images_per_second() const;
  /// Seconds left at the average pace so far; NaN before the first step.
  double eta_seconds() const;

  /// "MM:SS", or "H:MM:SS" from one hour on; "--:--" for NaN or negative.
  static std::string format_duration(double seconds);

 private:
  /// The status text without line ending or '\r'.
  std::string status_line(bool with_bar) const;
  void draw_bar();

  std::string label_;
  int64_t total_steps_;
  std::ostream& out_;
  Mode mode_;
  Clock clock_;
  double start_time_;
  double last_draw_time_ = 0;
  bool drawn_ = false;
  bool finished_ = false;
  int64_t step_done_ = 0;
  int64_t images_ = 0;
  double elapsed_ = 0;
  int last_tenth_ = 0;     ///< highest 10% boundary already printed (kLines)
  size_t last_width_ = 0;  ///< length of the bar line last drawn (kBar)
  std::map<std::string, double> stats_;
};

}  // namespace fsa::io
