#include "fsa/io/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <utility>

namespace fsa::io {

namespace {

double steady_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

/// A std::ostream does not expose its file descriptor; the standard streams
/// are the only ones whose descriptor is known.
Progress::Mode resolve_mode(Progress::Mode mode, const std::ostream& out) {
  if (mode != Progress::Mode::kAuto) return mode;
  int fd = -1;
  if (&out == &std::cerr || &out == &std::clog) fd = STDERR_FILENO;
  if (&out == &std::cout) fd = STDOUT_FILENO;
  return fd >= 0 && ::isatty(fd) ? Progress::Mode::kBar : Progress::Mode::kLines;
}

}  // namespace

Progress::Progress(std::string label, int64_t total_steps, std::ostream& out, Mode mode,
                   Clock clock)
    : label_(std::move(label)),
      total_steps_(total_steps),
      out_(out),
      mode_(resolve_mode(mode, out)),
      clock_(clock ? std::move(clock) : Clock(steady_seconds)) {
  if (total_steps < 1) {
    throw std::invalid_argument("Progress '" + label_ + "': total_steps must be >= 1, got " +
                                std::to_string(total_steps));
  }
  start_time_ = clock_();
}

Progress::~Progress() {
  try {
    finish();
  } catch (...) {
    // A destructor must not throw; a failed write to the console is not worth it.
  }
}

void Progress::update(int64_t step_done, int64_t images_in_step,
                      const std::map<std::string, double>& stats) {
  if (finished_) return;
  const double now = clock_();
  step_done_ = std::clamp<int64_t>(step_done, 0, total_steps_);
  images_ += images_in_step;
  elapsed_ = now - start_time_;
  stats_ = stats;

  switch (mode_) {
    case Mode::kBar:
      if (!drawn_ || step_done_ == total_steps_ || now - last_draw_time_ >= kBarRedrawSeconds) {
        draw_bar();
        last_draw_time_ = now;
      }
      break;
    case Mode::kLines: {
      // Integer arithmetic so that 100 steps print at exactly 10, 20, ... 100.
      const int tenth = static_cast<int>(step_done_ * 10 / total_steps_);
      if (tenth > last_tenth_) {
        last_tenth_ = tenth;
        out_ << status_line(/*with_bar=*/false) << '\n' << std::flush;
      }
      break;
    }
    case Mode::kAuto:
    case Mode::kQuiet:
      break;
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (mode_ == Mode::kBar) {
    draw_bar();
    out_ << '\n' << std::flush;
  }
}

double Progress::images_per_second() const {
  return elapsed_ > 0 ? static_cast<double>(images_) / elapsed_ : 0.0;
}

double Progress::eta_seconds() const {
  if (step_done_ <= 0) return std::numeric_limits<double>::quiet_NaN();
  return elapsed_ / static_cast<double>(step_done_) *
         static_cast<double>(total_steps_ - step_done_);
}

std::string Progress::format_duration(double seconds) {
  if (!(seconds >= 0) || std::isinf(seconds)) return "--:--";
  const auto total = static_cast<int64_t>(std::llround(seconds));
  const int64_t h = total / 3600, m = total / 60 % 60, s = total % 60;
  char buf[48];
  if (h > 0) {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(h),
                  static_cast<long long>(m), static_cast<long long>(s));
  } else {
    std::snprintf(buf, sizeof(buf), "%02lld:%02lld", static_cast<long long>(m),
                  static_cast<long long>(s));
  }
  return buf;
}

std::string Progress::status_line(bool with_bar) const {
  const int percent = static_cast<int>(step_done_ * 100 / total_steps_);
  std::string line = label_ + " " + std::to_string(step_done_) + "/" + std::to_string(total_steps_);
  char buf[64];
  if (with_bar) {
    const auto filled = static_cast<size_t>(step_done_ * kBarWidth / total_steps_);
    line += " [" + std::string(filled, '#') + std::string(kBarWidth - filled, '.') + "]";
    std::snprintf(buf, sizeof(buf), " %3d%%", percent);
  } else {
    std::snprintf(buf, sizeof(buf), " (%d%%)", percent);
  }
  line += buf;
  std::snprintf(buf, sizeof(buf), " %.1f img/s", images_per_second());
  line += buf;
  for (const auto& [name, value] : stats_) {
    std::snprintf(buf, sizeof(buf), "=%.4g", value);
    line += " " + name + buf;
  }
  if (with_bar) {
    line += " " + format_duration(elapsed_) + "<" + format_duration(eta_seconds());
  } else {
    line += " elapsed " + format_duration(elapsed_) + " left " + format_duration(eta_seconds());
  }
  return line;
}

void Progress::draw_bar() {
  std::string line = status_line(/*with_bar=*/true);
  const size_t width = line.size();
  // Blank out what remains of a longer previous line.
  if (width < last_width_) line.append(last_width_ - width, ' ');
  last_width_ = width;
  drawn_ = true;
  out_ << '\r' << line << std::flush;
}

}  // namespace fsa::io
