// Run-folder files: atomic writes and the clean-up of what a killed writer
// leaves, and the check that refuses pipes, folders and devices as files.
#include "fsa/io/files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace fsa::io {
namespace {

namespace fs = std::filesystem;

TEST(Files, AtomicWriteLeavesOnlyTheFile) {
  fsa::testing::TempDir dir;
  write_file_atomic(dir / "sub/a.txt", std::string("hello"));
  EXPECT_EQ(fsa::testing::read_text(dir / "sub/a.txt"), "hello");
  write_file_atomic(dir / "sub/a.txt", std::string("again"));
  EXPECT_EQ(fsa::testing::read_text(dir / "sub/a.txt"), "again");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir / "sub")) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  // A folder where the file should go: a named error, and no temporary left.
  fs::create_directories(dir / "sub/b.txt");
  EXPECT_THROW(write_file_atomic(dir / "sub/b.txt", std::string("x")), std::runtime_error);
  files = 0;
  for (const auto& e : fs::directory_iterator(dir / "sub")) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(Files, StaleTemporariesOfDeadWritersAreRemoved) {
  fsa::testing::TempDir dir;
  // pid 2^22 + 1 is above Linux's pid_max default: no process has it.
  const auto dead = dir / "last.pt.tmp.4194305";
  const auto mine = dir / ("best.pt.tmp." + std::to_string(::getpid()));
  const auto other = dir / "notes.tmp.txt";
  for (const auto& p : {dead, mine, other}) std::ofstream(p) << "x";
  const auto removed = remove_stale_temporaries(dir.path());
  EXPECT_EQ(removed, (std::vector<std::string>{dead}));
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(mine));   // a live writer's (this process)
  EXPECT_TRUE(fs::exists(other));  // not a write_file_atomic temporary
  EXPECT_TRUE(remove_stale_temporaries(dir / "missing").empty());
}

TEST(Files, RunOutputsAreFsasOwnFilesOnly) {
  testing::TempDir dir;
  EXPECT_TRUE(run_outputs(dir / "absent").empty());
  EXPECT_TRUE(run_outputs(dir.path()).empty());
  // What a run folder holds after Phase I with a report, a pipeline and
  // overlays; and what a user put beside them.
  for (const char* f :
       {"config.yaml", "metrics.json", "log.txt", "report.html",
        "events.out.tfevents.1796093898.vm.9906.0", "confusion_phase_i.png", "contact_class_3.png",
        "stdout.log", "notes.txt", "my_plot.png", "events.txt"}) {
    std::ofstream(dir / f) << "x";
  }
  for (const char* d : {"checkpoints", "plot_data", "phase_ii", "decouple_crt", "overlays",
                        "my_images", "phase_iv"}) {
    fs::create_directories(dir / d);
    std::ofstream(dir / d + "/inside.txt") << "x";
  }
  const std::vector<std::string> fsa_files{"checkpoints",
                                           "config.yaml",
                                           "confusion_phase_i.png",
                                           "contact_class_3.png",
                                           "decouple_crt",
                                           "events.out.tfevents.1796093898.vm.9906.0",
                                           "log.txt",
                                           "metrics.json",
                                           "overlays",
                                           "phase_ii",
                                           "plot_data",
                                           "report.html"};
  EXPECT_EQ(run_outputs(dir.path()), fsa_files);
  EXPECT_EQ(remove_run_outputs(dir.path()), fsa_files);
  EXPECT_TRUE(run_outputs(dir.path()).empty());
  // The user's files stay, folders with their contents.
  for (const char* kept : {"stdout.log", "notes.txt", "my_plot.png", "events.txt",
                           "my_images/inside.txt", "phase_iv/inside.txt"}) {
    EXPECT_TRUE(fs::exists(dir / kept)) << kept;
  }
  EXPECT_FALSE(fs::exists(dir / "checkpoints"));
}

TEST(Files, FileProblemNamesWhatIsNotAFile) {
  fsa::testing::TempDir dir;
  std::ofstream(dir / "f") << "x";
  ASSERT_EQ(mkfifo((dir / "fifo").c_str(), 0600), 0);
  EXPECT_EQ(file_problem(dir / "f"), "");
  EXPECT_EQ(file_problem(dir / "fifo"), "is a named pipe (FIFO), not a file");
  EXPECT_EQ(file_problem(dir.path()), "is a folder, not a file");
  EXPECT_EQ(file_problem("/dev/zero"), "is a device, not a file");
  EXPECT_EQ(file_problem(dir / "none"), "does not exist");
  EXPECT_NE(file_problem(std::string(5000, 'x')).find("File name too long"), std::string::npos);
  EXPECT_THROW(read_file(dir / "fifo"), std::runtime_error);  // never blocks on the pipe
}

}  // namespace
}  // namespace fsa::io
