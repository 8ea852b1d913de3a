// The committed results (docs/RESULTS.md): every row under results/ that
// holds a finished network (row.json beside its weights) is evaluated again
// with `fsa test` on the shared CIFAR-10 images, and must give the top-1 the
// row reports, within 0.05 points (exactly on the machine that trained it).
// CTest label: results.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using fsa::testing::read_text;
using fsa::testing::TempDir;

std::vector<fs::path> committed_rows() {
  std::vector<fs::path> rows;
  const fs::path root = FSA_SOURCE_DIR "/results";
  if (!fs::exists(root)) return rows;
  for (const auto& entry : fs::directory_iterator(root)) {
    if (fs::exists(entry.path() / "row.json")) rows.push_back(entry.path());
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

TEST(Results, EveryCommittedRowReproducesItsTop1) {
  const auto rows = committed_rows();
  if (rows.empty()) GTEST_SKIP() << "no finished row is committed under results/ yet";
  const std::string archive = FSA_SHARED_DIR "/data/cifar10-jpeg.tar.gz";
  ASSERT_TRUE(fs::exists(archive)) << archive;
  TempDir dir;
  ASSERT_EQ(fsa::testing::run_command("tar xzf '" + archive + "' -C '" + dir.path() + "'",
                                      dir / "tar.log"),
            0)
      << read_text(dir / "tar.log");
  for (const auto& row : rows) {
    // row.json: {"row": name, "config": path from the source folder,
    //            "set": [overrides], "checkpoint": file in the row's folder, "top1": fraction}
    const auto r = nlohmann::json::parse(read_text((row / "row.json").string()));
    std::string args = "test --quiet --config '" + std::string(FSA_SOURCE_DIR) + "/" +
                       r["config"].get<std::string>() + "' --set dataset.root='" + dir.path() +
                       "' --checkpoint '" + (row / r["checkpoint"].get<std::string>()).string() +
                       "' --out '" + (dir / row.filename().string()) + "'";
    for (const auto& s : r.value("set", nlohmann::json::array())) {
      args += " --set '" + s.get<std::string>() + "'";
    }
    std::string out;
    ASSERT_EQ(fsa::testing::run_fsa(dir, args, &out), 0) << row << "\n" << out;
    const auto m =
        nlohmann::json::parse(read_text(dir / (row.filename().string() + "/metrics.json")));
    EXPECT_NEAR(m["test"]["top1"].get<double>(), r["top1"].get<double>(), 0.0005)
        << r["row"].get<std::string>();
  }
}

}  // namespace
