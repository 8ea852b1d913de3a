#include "fsa/io/progress.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

namespace fsa::io {
namespace {

using Mode = Progress::Mode;

/// A clock the test moves by hand, in seconds.
struct FakeClock {
  double now = 1000.0;
  Progress::Clock fn() {
    return [this] { return now; };
  }
};

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// The percentage printed as "(NN%)" in a lines-mode line.
int percent_of(const std::string& line) {
  const size_t open = line.find(" (");
  const size_t close = line.find("%)", open);
  return std::stoi(line.substr(open + 2, close - open - 2));
}

std::vector<int> run_lines(int64_t total, const std::vector<int64_t>& steps_reported) {
  std::ostringstream out;
  FakeClock clock;
  {
    Progress p("epoch", total, out, Mode::kLines, clock.fn());
    for (int64_t s : steps_reported) {
      clock.now += 1;
      p.update(s, 8, {{"loss", 0.5}});
    }
    p.finish();
  }
  std::vector<int> percents;
  const std::string text = out.str();
  EXPECT_EQ(text.find('\r'), std::string::npos);
  if (!text.empty()) EXPECT_EQ(text.back(), '\n');
  for (const auto& line : split_lines(text)) {
    EXPECT_EQ(line.rfind("epoch ", 0), 0u) << line;
    percents.push_back(percent_of(line));
  }
  return percents;
}

std::vector<int64_t> every_step(int64_t total) {
  std::vector<int64_t> steps;
  for (int64_t s = 1; s <= total; ++s) steps.push_back(s);
  return steps;
}

TEST(Progress, LinesModePrintsOneLinePerTenth) {
  EXPECT_EQ(run_lines(100, every_step(100)),
            (std::vector<int>{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}));
  EXPECT_EQ(run_lines(10, every_step(10)).size(), 10u);
  EXPECT_EQ(run_lines(391, every_step(391)).size(), 10u);
  EXPECT_EQ(run_lines(391, every_step(391)).back(), 100);
}

TEST(Progress, LinesModeWithFewerThanTenStepsPrintsOneLinePerStep) {
  // Each of the 7 steps crosses at least one 10% boundary; step 3 (42%)
  // crosses both 30% and 40% and still prints a single line.
  EXPECT_EQ(run_lines(7, every_step(7)), (std::vector<int>{14, 28, 42, 57, 71, 85, 100}));
  EXPECT_EQ(run_lines(1, every_step(1)), (std::vector<int>{100}));
  EXPECT_EQ(run_lines(3, every_step(3)), (std::vector<int>{33, 66, 100}));
}

TEST(Progress, LinesModeWithSparseUpdatesPrintsOncePerUpdateThatCrosses) {
  EXPECT_EQ(run_lines(100, {5, 30, 31, 60, 99, 100}), (std::vector<int>{30, 60, 99, 100}));
  // Beyond the total is clamped to 100%, and never printed twice.
  EXPECT_EQ(run_lines(10, {5, 12, 15}), (std::vector<int>{50, 100}));
  // A loop cut short prints nothing at finish().
  EXPECT_EQ(run_lines(100, {10, 20, 25}), (std::vector<int>{10, 20}));
}

TEST(Progress, RateAndTimeLeftFollowTheClock) {
  std::ostringstream out;
  FakeClock clock;
  Progress p("phase_i epoch 3/8", 10, out, Mode::kLines, clock.fn());
  EXPECT_TRUE(std::isnan(p.eta_seconds()));
  EXPECT_EQ(p.images_per_second(), 0.0);
  for (int s = 1; s <= 4; ++s) {
    clock.now += 0.5;
    p.update(s, 64, {{"loss", 0.53}, {"acc", 0.81}});
  }
  EXPECT_DOUBLE_EQ(p.elapsed_seconds(), 2.0);
  EXPECT_DOUBLE_EQ(p.images_per_second(), 4 * 64 / 2.0);
  EXPECT_DOUBLE_EQ(p.eta_seconds(), 2.0 / 4 * 6);
  const auto lines = split_lines(out.str());
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines.back(),
            "phase_i epoch 3/8 4/10 (40%) 128.0 img/s acc=0.81 loss=0.53 elapsed 00:02 left 00:03");

  // A slow stretch: 6 more steps over 118 s.
  for (int s = 5; s <= 10; ++s) {
    clock.now += 118.0 / 6;
    p.update(s, 32, {});
  }
  EXPECT_NEAR(p.elapsed_seconds(), 120.0, 1e-9);
  EXPECT_NEAR(p.images_per_second(), (4 * 64 + 6 * 32) / 120.0, 1e-9);
  EXPECT_EQ(p.eta_seconds(), 0.0);
  EXPECT_NE(out.str().find("10/10 (100%) 3.7 img/s elapsed 02:00 left 00:00\n"), std::string::npos)
      << out.str();
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(Progress::format_duration(0), "00:00");
  EXPECT_EQ(Progress::format_duration(65.4), "01:05");
  EXPECT_EQ(Progress::format_duration(3599.4), "59:59");
  EXPECT_EQ(Progress::format_duration(3725), "1:02:05");
  EXPECT_EQ(Progress::format_duration(std::nan("")), "--:--");
  EXPECT_EQ(Progress::format_duration(-1), "--:--");
}

TEST(Progress, QuietPrintsNothing) {
  std::ostringstream out;
  FakeClock clock;
  {
    Progress p("x", 5, out, Mode::kQuiet, clock.fn());
    for (int s = 1; s <= 5; ++s) p.update(s, 1, {{"loss", 1}});
    p.finish();
  }
  EXPECT_EQ(out.str(), "");
}

TEST(Progress, BarRedrawsInPlaceUntilFinish) {
  std::ostringstream out;
  FakeClock clock;
  Progress p("epoch 1/2", 10, out, Mode::kBar, clock.fn());
  for (int s = 1; s <= 10; ++s) {
    clock.now += 1;
    p.update(s, 100, {{"loss", 2.0 / s}});
    EXPECT_EQ(out.str().find('\n'), std::string::npos) << "after step " << s;
  }
  const std::string before_finish = out.str();
  EXPECT_EQ(std::count(before_finish.begin(), before_finish.end(), '\r'), 10);
  const std::string last = before_finish.substr(before_finish.rfind('\r') + 1);
  EXPECT_EQ(
      last.rfind("epoch 1/2 10/10 [####################] 100% 100.0 img/s loss=0.2 00:10<00:00", 0),
      0u)
      << last;
  p.finish();
  const std::string text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
  EXPECT_EQ(text.back(), '\n');
  p.finish();
  p.update(3, 1, {});
  EXPECT_EQ(out.str(), text);
}

TEST(Progress, BarShowsHalfwayAndBlanksLeftovers) {
  std::ostringstream out;
  FakeClock clock;
  Progress p("e", 4, out, Mode::kBar, clock.fn());
  clock.now += 1;
  p.update(2, 10, {{"loss", 1.23456789}});
  EXPECT_EQ(out.str(), "\re 2/4 [##########..........]  50% 10.0 img/s loss=1.235 00:01<00:01");
  const size_t first_width = out.str().size() - 1;
  clock.now += 1;
  p.update(3, 10, {});  // shorter: the old tail must be overwritten with spaces
  const std::string second = out.str().substr(out.str().rfind('\r') + 1);
  EXPECT_EQ(second.size(), first_width);
  EXPECT_EQ(second.rfind("e 3/4 [###############.....]  75% 10.0 img/s 00:02<00:01", 0), 0u)
      << second;
  EXPECT_EQ(second.find_first_not_of(' ', second.find("<00:01") + 6), std::string::npos);
}

TEST(Progress, BarRedrawsAtMostEveryTenthOfASecond) {
  std::ostringstream out;
  FakeClock clock;
  {
    Progress p("e", 1000, out, Mode::kBar, clock.fn());
    for (int s = 1; s <= 1000; ++s) {
      clock.now += 0.001;  // 1 s in all
      p.update(s, 1, {});
    }
  }
  const std::string text = out.str();
  const auto redraws = std::count(text.begin(), text.end(), '\r');
  // First update, every 0.1 s (about 10), the last step, finish().
  EXPECT_GE(redraws, 10);
  EXPECT_LE(redraws, 14);
  EXPECT_NE(text.find("1000/1000"), std::string::npos);
  EXPECT_EQ(text.back(), '\n');  // the destructor finished it
}

TEST(Progress, AutoOnAStringStreamIsLines) {
  std::ostringstream out;
  Progress p("x", 3, out);
  EXPECT_EQ(p.mode(), Mode::kLines);
  EXPECT_EQ(Progress("x", 3, out, Mode::kBar).mode(), Mode::kBar);
}

TEST(Progress, RejectsEmptyLoop) {
  std::ostringstream out;
  EXPECT_THROW(Progress("x", 0, out), std::invalid_argument);
}

}  // namespace
}  // namespace fsa::io
