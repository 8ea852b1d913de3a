// The run report: plots are real PNGs, report.html and the plot data hold the
// numbers of metrics.json in training-set-size order, bad input names the file.
// Drawing needs gnuplot (Debian: gnuplot-nox); the tests that draw fail with
// that hint when it is missing. With FSA_REPORT_TEST_OUT set, the full report
// is also written there, for tests/io/report_screenshot.sh.
#include "fsa/io/report.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Deliberately not in size order, so that a report drawn in index order fails.
const std::vector<std::string> kNames{"cat", "dog_small", "eel", "fox"};
const std::vector<int64_t> kCounts{50, 500, 5, 120};
const std::vector<bool> kHead{false, true, false, true};
const std::vector<double> kAccI{0.41, 0.93, 0.07, 0.75};
const std::vector<double> kAccIII{0.52, 0.90, 0.24, 0.74};

json make_phase(const std::vector<double>& acc, double top1, bool with_confusion, int epochs) {
  json p{{"top1", top1},
         {"per_class", acc},
         {"head", 0.84},
         {"tail", top1 - 0.2},
         {"many", 0.84},
         {"medium", acc[0]},
         {"few", acc[2]},
         {"loss", 1.25},
         {"class_counts", kCounts},
         {"best_top1", top1 + 0.01},
         {"best_epoch", epochs - 1},
         {"class_names", kNames}};
  if (with_confusion) {
    // 100 test images per class: the diagonal is the accuracy, the rest goes
    // to the next class.
    json rows = json::array();
    for (size_t i = 0; i < acc.size(); ++i) {
      std::vector<int64_t> row(acc.size(), 0);
      row[i] = std::llround(100 * acc[i]);
      row[(i + 1) % acc.size()] = 100 - row[i];
      rows.push_back(row);
    }
    p["confusion"] = rows;
  }
  json history = json::array();
  for (int e = 1; e <= epochs; ++e) {
    history.push_back({{"epoch", e},
                       {"lr", e < 3 ? 0.1 : 0.001},
                       {"train_loss", 2.0 / e},
                       {"train_acc", 0.3 + 0.1 * e},
                       {"test_loss", 2.2 / e},
                       {"test_acc", 0.25 + 0.08 * e},
                       {"test_head", 0.4 + 0.08 * e},
                       {"test_tail", e == 2 ? json(nullptr) : json(0.1 + 0.05 * e)},
                       {"test_many", nullptr},
                       {"test_medium", nullptr},
                       {"test_few", nullptr},
                       {"seconds", 10.0}});
  }
  p["history"] = history;
  return p;
}

json make_run() {
  return {{"phase_i", make_phase(kAccI, 0.62, true, 5)},
          {"phase_iii", make_phase(kAccIII, 0.66, true, 4)},
          {"class_counts", kCounts},
          {"class_names", kNames},
          {"head_classes", kHead},
          {"dataset", "Toy-LT"},
          {"imbalance_factor", 100},
          {"model", "resnet32"},
          {"seconds", 4000.0}};
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Width and height from the IHDR chunk; {0, 0} when the file is no PNG.
std::pair<uint32_t, uint32_t> png_size(const fs::path& path) {
  const auto bytes = read_text(path);
  const std::string signature("\x89PNG\r\n\x1a\n", 8);
  if (bytes.size() < 33 || bytes.compare(0, 8, signature) != 0 ||
      bytes.compare(12, 4, "IHDR") != 0) {
    return {0, 0};
  }
  auto be32 = [&](size_t o) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[o + i]);
    return v;
  };
  return {be32(16), be32(20)};
}

std::string pct(double v) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(2);
  s << 100 * v;
  return s.str();
}

// Class indices by training-set size, descending, computed independently of
// the library (selection, not a sort).
std::vector<size_t> by_size() {
  std::vector<size_t> order;
  std::vector<bool> used(kCounts.size(), false);
  for (size_t n = 0; n < kCounts.size(); ++n) {
    size_t best = kCounts.size();
    for (size_t k = 0; k < kCounts.size(); ++k) {
      if (!used[k] && (best == kCounts.size() || kCounts[k] > kCounts[best])) best = k;
    }
    used[best] = true;
    order.push_back(best);
  }
  return order;
}

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("fsa_report_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write_metrics(const json& j) { write_raw(j.dump(2)); }
  void write_raw(const std::string& text) { std::ofstream(dir_ / "metrics.json") << text; }

  // Expects write_report to throw a std::runtime_error naming metrics.json and `what`.
  void expect_error(const std::string& what) {
    try {
      fsa::io::write_report(dir_.string());
      FAIL() << "no exception; expected one mentioning " << what;
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find((dir_ / "metrics.json").string()), std::string::npos) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << msg;
    }
  }

  fs::path dir_;
};

std::string missing_list(const fsa::io::ReportFiles& files) {
  std::string s;
  for (const auto& m : files.missing) s += m.file + ": " + m.reason + "\n";
  return s;
}

TEST_F(ReportTest, FullRunDrawsEveryPlotAsPng) {
  write_metrics(make_run());
  const auto files = fsa::io::write_report(dir_.string());
  ASSERT_TRUE(files.missing.empty()) << "needs gnuplot (apt-get install gnuplot-nox):\n"
                                     << missing_list(files);
  const std::vector<std::string> expected{"per_class_accuracy.png", "confusion_phase_i.png",
                                          "confusion_phase_iii.png", "curves_phase_i.png",
                                          "curves_phase_iii.png"};
  EXPECT_EQ(files.images.size(), expected.size());
  const auto html = read_text(dir_ / "report.html");
  for (const auto& name : expected) {
    const auto [w, h] = png_size(dir_ / name);
    EXPECT_GT(w, 0u) << name << " is not a PNG";
    EXPECT_GT(h, 0u) << name << " is not a PNG";
    EXPECT_NE(html.find("<img src=\"" + name + "\""), std::string::npos) << name;
    EXPECT_FALSE(fs::exists(dir_ / (name + ".tmp"))) << name;
  }
  EXPECT_EQ(files.html, (dir_ / "report.html").string());
  EXPECT_TRUE(files.notes.empty());
  if (const char* keep = std::getenv("FSA_REPORT_TEST_OUT")) {
    fs::create_directories(keep);
    fs::copy_file(dir_ / "metrics.json", fs::path(keep) / "metrics.json",
                  fs::copy_options::overwrite_existing);
    const auto kept = fsa::io::write_report(keep);
    EXPECT_TRUE(kept.missing.empty()) << missing_list(kept);
  }
}

TEST_F(ReportTest, HtmlHoldsTheMetricsInSizeOrder) {
  write_metrics(make_run());
  fsa::io::write_report(dir_.string());
  const auto html = read_text(dir_ / "report.html");
  for (const auto* fact : {"Toy-LT", "resnet32", "1 h 06 min"}) {
    EXPECT_NE(html.find(fact), std::string::npos) << fact;
  }
  // Metric table: overall top-1 of each phase and the change in points.
  EXPECT_NE(html.find(">62.00<"), std::string::npos);
  EXPECT_NE(html.find(">66.00<"), std::string::npos);
  EXPECT_NE(html.find(">+4.00<"), std::string::npos);

  size_t previous = 0;
  for (size_t k : by_size()) {
    const auto start = html.find("<tr data-class=\"" + std::to_string(k) + "\"");
    ASSERT_NE(start, std::string::npos) << "no row for class " << k;
    EXPECT_GT(start, previous) << "class " << k << " is out of size order";
    previous = start;
    const auto row = html.substr(start, html.find("</tr>", start) - start);
    EXPECT_NE(row.find(">" + kNames[k] + "<"), std::string::npos) << row;
    EXPECT_NE(row.find(">" + std::to_string(kCounts[k]) + "<"), std::string::npos) << row;
    EXPECT_NE(row.find(kHead[k] ? ">head<" : ">tail<"), std::string::npos) << row;
    const auto i = row.find(">" + pct(kAccI[k]) + "<");
    const auto iii = row.find(">" + pct(kAccIII[k]) + "<");
    ASSERT_NE(i, std::string::npos) << "Phase I " << pct(kAccI[k]) << " not in " << row;
    ASSERT_NE(iii, std::string::npos) << "Phase III " << pct(kAccIII[k]) << " not in " << row;
    EXPECT_LT(i, iii) << "Phase I must come before Phase III";
  }
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
}

TEST_F(ReportTest, PlotDataHoldsThePerClassValuesInSizeOrder) {
  write_metrics(make_run());
  const auto files = fsa::io::write_report(dir_.string());
  const auto data = dir_ / "plot_data" / "per_class.dat";
  ASSERT_TRUE(fs::exists(data));
  EXPECT_NE(std::find(files.plot_inputs.begin(), files.plot_inputs.end(), data.string()),
            files.plot_inputs.end());
  std::ifstream in(data);
  std::vector<size_t> seen;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    size_t rank = 0, k = 0;
    std::string name;
    int64_t count = 0;
    double acc_i = 0, acc_iii = 0;
    fields >> rank >> k >> name >> count >> acc_i >> acc_iii;
    ASSERT_FALSE(fields.fail()) << line;
    ASSERT_LT(k, kCounts.size());
    EXPECT_EQ(rank, seen.size());
    EXPECT_EQ(name, "\"" + kNames[k] + "\"");
    EXPECT_EQ(count, kCounts[k]);
    EXPECT_NEAR(acc_i, 100 * kAccI[k], 1e-3) << line;
    EXPECT_NEAR(acc_iii, 100 * kAccIII[k], 1e-3) << line;
    seen.push_back(k);
  }
  EXPECT_EQ(seen, by_size());
  // The confusion data is row-normalised, rows in size order: the diagonal is
  // each class's accuracy.
  std::ifstream conf(dir_ / "plot_data" / "confusion_phase_iii.dat");
  const auto order = by_size();
  for (size_t r = 0; r < order.size(); ++r) {
    std::vector<double> row(order.size());
    for (auto& v : row) conf >> v;
    ASSERT_FALSE(conf.fail());
    EXPECT_NEAR(row[r], std::llround(100 * kAccIII[order[r]]) / 100.0, 1e-6) << "row " << r;
  }
}

TEST_F(ReportTest, AClassWithoutTestImagesIsMarkedNotDrawnAsZero) {
  auto run = make_run();
  const size_t missing = 1;
  for (const char* phase : {"phase_i", "phase_iii"}) run[phase]["per_class"][missing] = nullptr;
  write_metrics(run);
  fsa::io::write_report(dir_.string());
  const auto script = read_text(dir_ / "plot_data" / "per_class.gp");
  // One label, at the class's rank in size order.
  const auto order = by_size();
  const auto rank = std::find(order.begin(), order.end(), missing) - order.begin();
  EXPECT_NE(script.find(fmt::format("set label 'no test images' at {},2 ", rank)),
            std::string::npos)
      << script;
  EXPECT_EQ(script.find("no test images"), script.rfind("no test images")) << script;
}

TEST_F(ReportTest, SinglePhaseRunSkipsWhatItLacks) {
  auto phase = make_phase(kAccI, 0.62, /*with_confusion=*/false, 3);
  write_metrics({{"phase_i", phase}});
  const auto files = fsa::io::write_report(dir_.string());
  ASSERT_TRUE(files.missing.empty()) << missing_list(files);
  EXPECT_TRUE(fs::exists(dir_ / "per_class_accuracy.png"));
  EXPECT_TRUE(fs::exists(dir_ / "curves_phase_i.png"));
  EXPECT_FALSE(fs::exists(dir_ / "confusion_phase_i.png"));
  EXPECT_FALSE(fs::exists(dir_ / "curves_phase_iii.png"));
  EXPECT_EQ(files.images.size(), 2u);
  const auto html = read_text(dir_ / "report.html");
  EXPECT_EQ(html.find("phase_iii"), std::string::npos);
  EXPECT_NE(html.find("no Phase III"), std::string::npos);
  EXPECT_NE(html.find("no confusion matrix"), std::string::npos);
  // Per-class values still come from the phase's own class counts.
  const auto row = html.substr(html.find("<tr data-class=\"2\""));
  EXPECT_NE(row.find(">" + pct(kAccI[2]) + "<"), std::string::npos);
}

TEST_F(ReportTest, WithoutGnuplotTheHtmlIsStillWritten) {
  write_metrics(make_run());
  fsa::io::ReportOptions options;
  options.gnuplot = (dir_ / "no-such-gnuplot").string();
  const auto files = fsa::io::write_report(dir_.string(), options);
  EXPECT_TRUE(files.images.empty());
  ASSERT_EQ(files.missing.size(), 5u);
  EXPECT_NE(files.missing[0].reason.find("gnuplot-nox"), std::string::npos);
  const auto html = read_text(dir_ / "report.html");
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_NE(html.find("per_class_accuracy.png was not drawn"), std::string::npos);
  EXPECT_NE(html.find(">" + pct(kAccIII[3]) + "<"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir_ / "per_class_accuracy.png"));
}

// A minimal PNG header: the signature and an IHDR chunk of the given size.
void write_png_header(const fs::path& path, uint32_t width, uint32_t height) {
  std::ofstream out(path, std::ios::binary);
  const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  out.write(reinterpret_cast<const char*>(sig), 8);
  const unsigned char length[4] = {0, 0, 0, 13};
  out.write(reinterpret_cast<const char*>(length), 4);
  out << "IHDR";
  for (uint32_t v : {width, height}) {
    const unsigned char be[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
                                 static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
    out.write(reinterpret_cast<const char*>(be), 4);
  }
}

TEST_F(ReportTest, ShowsTheContactSheetsInClassOrder) {
  write_metrics(make_run());
  write_png_header(dir_ / "contact_10_Ten.png", 64, 64);
  write_png_header(dir_ / "contact_7_Sneaker.png", 64, 64);
  write_png_header(dir_ / "contact_2_Pullover.png", 64, 64);
  std::ofstream(dir_ / "contact_3_broken.png") << "not a png";
  const auto files = fsa::io::write_report(dir_.string());
  const std::vector<std::string> expected{"contact_2_Pullover.png", "contact_7_Sneaker.png",
                                          "contact_10_Ten.png"};
  EXPECT_EQ(files.contact_sheets, expected);
  const auto html = read_text(dir_ / "report.html");
  size_t previous = 0;
  for (const auto& name : expected) {
    const auto at = html.find("<img src=\"" + name + "\"");
    ASSERT_NE(at, std::string::npos) << name;
    EXPECT_GT(at, previous) << name << " out of class order";
    previous = at;
  }
  EXPECT_EQ(html.find("contact_3_broken.png"), std::string::npos);
}

TEST_F(ReportTest, WithoutContactSheetsThereIsNoCamSection) {
  write_metrics(make_run());
  const auto files = fsa::io::write_report(dir_.string());
  EXPECT_TRUE(files.contact_sheets.empty());
  EXPECT_EQ(read_text(dir_ / "report.html").find("Class activation maps"), std::string::npos);
}

TEST_F(ReportTest, WritesIntoAChosenFolder) {
  write_metrics(make_run());
  const auto out = dir_ / "elsewhere";
  const auto files = fsa::io::write_report(dir_.string(), out.string());
  EXPECT_EQ(files.html, (out / "report.html").string());
  EXPECT_TRUE(fs::exists(out / "report.html"));
  EXPECT_FALSE(fs::exists(dir_ / "report.html"));
  for (const auto& image : files.images) EXPECT_EQ(fs::path(image).parent_path(), out);
  EXPECT_EQ(files.images.size(), 5u) << missing_list(files);
}

TEST_F(ReportTest, MissingMetricsNamesTheFile) { expect_error("cannot be opened"); }

TEST_F(ReportTest, MalformedJsonNamesTheFile) {
  write_raw("{\"phase_i\": {\"top1\": 0.5,");
  expect_error("not valid JSON");
}

TEST_F(ReportTest, WrongTypesAndLengthsNameTheKey) {
  auto run = make_run();
  run["phase_i"]["per_class"][1] = "high";
  write_metrics(run);
  expect_error("phase_i.per_class[1] must be a number or null");

  run = make_run();
  run["phase_iii"]["per_class"].erase(0);
  write_metrics(run);
  expect_error("phase_iii.per_class has 3 entries, expected 4");

  run = make_run();
  run["phase_i"]["confusion"][2] = {1, 2};
  write_metrics(run);
  expect_error("phase_i.confusion[2] has 2 entries, expected 4");

  write_metrics({{"model", "resnet32"}});
  expect_error("none of 'phase_i', 'phase_iii'");

  write_raw("[1, 2]");
  expect_error("must be an object");
}

}  // namespace
