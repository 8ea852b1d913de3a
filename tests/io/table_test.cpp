// `fsa table` on run folders built by hand: methods named from the resolved
// configs, and mean ± sample standard deviation worked out by hand.
#include "fsa/io/table.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fsa/io/config.h"
#include "test_util.h"

namespace fsa::io {
namespace {

namespace fs = std::filesystem;

nlohmann::json figures(double top1, double head, double tail) {
  return {{"top1", top1},   {"many", head}, {"medium", tail},
          {"few", nullptr}, {"head", head}, {"tail", tail}};
}

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

/// The resolved config.yaml of a run; fp32 and NCHW unless `yaml` says
/// otherwise, whatever `auto` would pick on this machine.
std::string config_yaml(const std::string& yaml) {
  auto c = parse_config(YAML::Load(yaml), "t.yaml");
  if (c.precision_auto) c.precision = "fp32";
  if (c.memory_format_auto) c.memory_format = "contiguous";
  return to_yaml(c);
}

TEST(Table, PipelineAndSingleFoldersWithMeanAndStd) {
  testing::TempDir dir;
  // Two seeds of one Balanced Softmax + FSA pipeline.
  for (const auto& [name, seed, t1, t3] :
       {std::tuple{"bs1", 1, 0.70, 0.74}, std::tuple{"bs2", 2, 0.72, 0.78}}) {
    const auto run = fs::path(dir.path()) / name;
    const auto c = fmt::format(
        "random_seed: {}\ntrain: {{num_epoch: 200, loss: "
        "balanced_softmax}}",
        seed);
    write(run / "phase_i" / "config.yaml", config_yaml(c));
    write(run / "phase_iii" / "config.yaml",
          config_yaml(fmt::format("random_seed: {}\ntrain: {{num_epoch: 40}}", seed)));
    write(run / "metrics.json", nlohmann::json{{"phase_i", figures(t1, 0.9, 0.5)},
                                               {"phase_iii", figures(t3, 0.85, t3 - 0.1)}}
                                    .dump());
  }
  // One LDAM-DRW Phase I, and one cRT.
  const auto ldam = fs::path(dir.path()) / "ldam";
  write(ldam / "config.yaml",
        config_yaml("model: {classifier: cosine}\ntrain: {num_epoch: 200, loss: {name: ldam, "
                    "weighting: drw}}"));
  write(ldam / "metrics.json", nlohmann::json{{"phase_i", figures(0.77, 0.9, 0.6)}}.dump());
  const auto crt = fs::path(dir.path()) / "crt";
  write(crt / "config.yaml", config_yaml("train: {num_epoch: 10, sampler: class_balanced}"));
  write(crt / "metrics.json", nlohmann::json{{"decouple", figures(0.75, 0.8, 0.7)}}.dump());

  std::vector<ResultRow> rows;
  for (const auto* r : {"bs1", "bs2", "ldam", "crt"}) {
    const auto more = read_result_rows(dir / r);
    rows.insert(rows.end(), more.begin(), more.end());
  }
  ASSERT_EQ(rows.size(), 6u);
  const auto groups = group_results(rows);
  ASSERT_EQ(groups.size(), 4u);
  EXPECT_EQ(groups[0].method, "Balanced Softmax");
  EXPECT_EQ(groups[0].schedule, "200 ep");
  EXPECT_EQ(groups[1].method, "Balanced Softmax + FSA (online)");
  EXPECT_EQ(groups[1].schedule, "200 + 40 ep");
  EXPECT_EQ(groups[2].method, "LDAM-DRW");
  EXPECT_EQ(groups[3].method, "cRT");
  EXPECT_EQ(groups[3].schedule, "+10 ep");
  // 0.74 and 0.78: mean 0.76, sample std √((0.02² + 0.02²)/1) = 0.028284.
  EXPECT_EQ(groups[1].runs.size(), 2u);
  EXPECT_NEAR(groups[1].figures.at("top1").first, 0.76, 1e-12);
  EXPECT_NEAR(groups[1].figures.at("top1").second, 0.02 * std::sqrt(2.0), 1e-12);
  EXPECT_EQ(groups[1].figures.count("few"), 0u);  // null in every run: no figure
  const auto md = results_markdown(groups);
  EXPECT_NE(md.find("| Balanced Softmax + FSA (online) | 200 + 40 ep |"), std::string::npos);
  EXPECT_NE(md.find("76.00 ± 2.83"), std::string::npos) << md;
  EXPECT_NE(md.find("| LDAM-DRW | 200 ep | CIFAR-10-LT IF 100, resnet32 | 1 (ldam) | 77.00 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| 2 (bs1, bs2) |"), std::string::npos) << md;
  // Another recipe of the same method (a different learning rate) is its own row.
  const auto other = fs::path(dir.path()) / "bs3";
  write(other / "phase_i" / "config.yaml",
        config_yaml("random_seed: 1\ntrain: {num_epoch: 200, loss: balanced_softmax, "
                    "optimizer: {name: SGD, kwargs: {lr: 0.05}}}"));
  write(other / "phase_iii" / "config.yaml", config_yaml("random_seed: 1\ntrain: {num_epoch: 40}"));
  write(other / "metrics.json",
        nlohmann::json{{"phase_i", figures(0.6, 0.9, 0.5)}, {"phase_iii", figures(0.6, 0.8, 0.5)}}
            .dump());
  auto more = rows;
  for (const auto& r : read_result_rows(other.string())) more.push_back(r);
  EXPECT_EQ(group_results(more).size(), 6u);
  const auto html = results_html(groups);
  EXPECT_NE(html.find("<td class=\"n\">76.00 ± 2.83</td>"), std::string::npos);
}

TEST(Table, AFolderWithoutMetricsIsNamed) {
  testing::TempDir dir;
  try {
    read_result_rows(dir / "nothing");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("nothing"), std::string::npos);
  }
}

}  // namespace
}  // namespace fsa::io
