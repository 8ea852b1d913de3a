#include "fsa/data/list_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "test_util.h"

namespace fsa::data {
namespace {

namespace fs = std::filesystem;
using fsa::testing::TempDir;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

/// The DataError message of `f()`, or "" if it does not throw one.
template <typename F>
std::string data_error(F f) {
  return fsa::testing::error_message<DataError>(f);
}

std::string shared_dir() { return FSA_SHARED_DIR; }

TEST(ListFile, ParsesPathsLabelsBlankLinesCrlfAndSpaces) {
  TempDir dir;
  const auto list = dir / "train.txt";
  write_text(list,
             "a/x.jpg 0\r\n"
             "\r\n"
             "b/y.jpg 2   \r\n"
             "   \n"
             "\tc/with space.jpg\t1\n"
             "a/z.jpg 0");  // no final newline
  const auto l = read_list_file(list, {"/data", false, 0});
  ASSERT_EQ(l.size(), 4);
  EXPECT_EQ(l.num_classes, 3);
  EXPECT_EQ(l.samples[0].path, "/data/a/x.jpg");
  EXPECT_EQ(l.samples[1].path, "/data/b/y.jpg");
  EXPECT_EQ(l.samples[1].label, 2);
  EXPECT_EQ(l.samples[2].path, "/data/c/with space.jpg");
  EXPECT_EQ(l.samples[2].label, 1);
  EXPECT_EQ(l.labels(), (std::vector<int64_t>{0, 2, 1, 0}));
  EXPECT_EQ(l.class_counts(), (std::vector<int64_t>{2, 1, 1}));
  // No root: paths as written. Given class count: more classes than labels.
  const auto m = read_list_file(list, {"", false, 10});
  EXPECT_EQ(m.samples[0].path, "a/x.jpg");
  EXPECT_EQ(m.num_classes, 10);
  EXPECT_EQ(m.class_counts().size(), 10u);
}

TEST(ListFile, BadLinesNameFileAndLine) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases{
      {"a.jpg 0\n\nb.jpg\n", ":3: no label"},
      {"a.jpg 0\r\nb.jpg one\r\n", ":2: label 'one' is not an integer"},
      {"a.jpg 1.5\n", ":1: label '1.5' is not an integer"},
      {"a.jpg 0\nb.jpg 1\nc.jpg -4\n", ":3: label -4 is negative"},
      {"a.jpg 99999999999999999999\n", ":1: label '99999999999999999999' is not an integer"},
  };
  for (const auto& [text, expected] : cases) {
    const auto list = dir / "bad.txt";
    write_text(list, text);
    const auto msg = data_error([&] { read_list_file(list); });
    EXPECT_NE(msg.find(list + expected), std::string::npos) << msg;
  }
  write_text(dir / "big.txt", "a.jpg 0\nb.jpg 5\n");
  const auto msg = data_error([&] { read_list_file(dir / "big.txt", {"", false, 5}); });
  EXPECT_NE(msg.find("big.txt:2: label 5 is >= the 5 classes"), std::string::npos) << msg;
  write_text(dir / "empty.txt", "\n\r\n  \n");
  EXPECT_NE(data_error([&] { read_list_file(dir / "empty.txt"); }).find("lists no images"),
            std::string::npos);
  EXPECT_NE(data_error([&] { read_list_file(dir / "missing.txt"); }).find("does not exist"),
            std::string::npos);
}

TEST(ListFile, ByteOrderMarkNulBytesHugeLabelsAndLongPaths) {
  TempDir dir;
  // A UTF-8 byte-order mark is not part of the first path.
  write_text(dir / "bom.txt",
             "\xEF\xBB\xBF"
             "a.jpg 0\nb.jpg 1\n");
  EXPECT_EQ(read_list_file(dir / "bom.txt").samples[0].path, "a.jpg");
  // A NUL byte would cut the path silently.
  write_text(dir / "nul.txt", std::string("a.jpg 0\nb.jpg\0.png 1\n", 21));
  auto msg = data_error([&] { read_list_file(dir / "nul.txt"); });
  EXPECT_NE(msg.find("nul.txt:2: the line holds a NUL byte"), std::string::npos) << msg;
  // A huge label with the class count taken from the labels.
  write_text(dir / "huge.txt", "a.jpg 0\nb.jpg 9223372036854775807\n");
  msg = data_error([&] { read_list_file(dir / "huge.txt"); });
  EXPECT_NE(msg.find("huge.txt:2: label 9223372036854775807 would make"), std::string::npos) << msg;
  EXPECT_NE(msg.find("set dataset.num_classes"), std::string::npos) << msg;
  // A path longer than the OS allows: named with the line, not a bare OS error.
  write_text(dir / "long.txt", std::string(5000, 'x') + ".jpg 0\n");
  msg = data_error([&] { read_list_file(dir / "long.txt", {dir.path(), true, 0}); });
  EXPECT_NE(msg.find("long.txt:1: '"), std::string::npos) << msg;
  EXPECT_NE(msg.find("File name too long"), std::string::npos) << msg;
  // A pipe or a device as a listed image or as the list itself.
  write_text(dir / "dev.txt", "/dev/zero 0\n");
  msg = data_error([&] { read_list_file(dir / "dev.txt", {"", true, 0}); });
  EXPECT_NE(msg.find("dev.txt:1: '/dev/zero' is a device"), std::string::npos) << msg;
  msg = data_error([&] { read_list_file("/dev/zero"); });
  EXPECT_NE(msg.find("list file '/dev/zero' is a device"), std::string::npos) << msg;
}

TEST(ListFile, ChecksThatFilesExist) {
  TempDir dir;
  fs::create_directories(dir / "img/a");
  write_text(dir / "img/a/1.jpg", "x");
  write_text(dir / "list.txt", "a/1.jpg 0\na/2.jpg 1\n");
  ListFileOptions o{dir / "img", true, 0};
  const auto msg = data_error([&] { read_list_file(dir / "list.txt", o); });
  EXPECT_NE(msg.find("list.txt:2: '" + (dir / "img/a/2.jpg") + "' does not exist"),
            std::string::npos)
      << msg;
  write_text(dir / "img/a/2.jpg", "x");
  EXPECT_EQ(read_list_file(dir / "list.txt", o).size(), 2);
  write_text(dir / "folder.txt", "a/1.jpg 0\na 1\n");  // a line naming a folder
  const auto folder = data_error([&] { read_list_file(dir / "folder.txt", o); });
  EXPECT_NE(folder.find("folder.txt:2: '" + (dir / "img/a") + "' is a folder"), std::string::npos)
      << folder;
}

TEST(ListFile, ClassStatsShotGroupsAndHead) {
  // 150 | 100 | 20 | 19 | 1: many, medium, medium, few, few.
  const auto s = class_stats({150, 100, 20, 19, 1}, 0.5);
  EXPECT_EQ(s.total, 290);
  EXPECT_EQ(s.num_many, 1);
  EXPECT_EQ(s.num_medium, 2);
  EXPECT_EQ(s.num_few, 2);
  EXPECT_EQ(s.min_count, 1);
  EXPECT_EQ(s.max_count, 150);
  EXPECT_EQ(s.head, (std::vector<bool>{true, false, false, false, false}));  // 150 >= 145
  EXPECT_EQ(s.num_head, 1);
  EXPECT_EQ(class_stats({150, 100, 20, 19, 1}, 0.9, {3}).head,
            (std::vector<bool>{false, false, false, true, false}));
}

TEST(NpyReader, ReadsInt64VectorsAndRejectsOthers) {
  TempDir dir;
  auto npy = [&](const std::string& header, const std::vector<int64_t>& values) {
    std::string h = header;
    while ((10 + h.size() + 1) % 64 != 0) h += ' ';
    h += '\n';
    std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
    bytes += char(h.size() & 0xff);
    bytes += char(h.size() >> 8);
    bytes += h;
    for (auto v : values) {
      for (int b = 0; b < 8; ++b) bytes += char((uint64_t(v) >> (8 * b)) & 0xff);
    }
    return bytes;
  };
  write_text(dir / "ok.npy",
             npy("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", {5, -1, 1LL << 40}));
  EXPECT_EQ(read_npy_int64(dir / "ok.npy"), (std::vector<int64_t>{5, -1, 1LL << 40}));
  write_text(dir / "f4.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", {1}));
  EXPECT_NE(data_error([&] { read_npy_int64(dir / "f4.npy"); }).find("'<f4'"), std::string::npos);
  write_text(dir / "2d.npy",
             npy("{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2), }", {1, 2}));
  EXPECT_NE(data_error([&] { read_npy_int64(dir / "2d.npy"); }).find("not one-dimensional"),
            std::string::npos);
  write_text(dir / "short.npy",
             npy("{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }", {1, 2}));
  EXPECT_NE(data_error([&] { read_npy_int64(dir / "short.npy"); }).find("short.npy"),
            std::string::npos);
  write_text(dir / "text.npy", "hello");
  EXPECT_NE(data_error([&] { read_npy_int64(dir / "text.npy"); }).find("magic"), std::string::npos);
}

// The public split lists in ../shared/data/splits (data/README.md).
class SharedSplits : public ::testing::Test {
 protected:
  void SetUp() override {
    splits_ = shared_dir() + "/data/splits";
    if (!fs::is_directory(splits_)) GTEST_SKIP() << splits_ << " is absent";
  }
  std::string splits_;
};

TEST_F(SharedSplits, PlacesLtTrain) {
  const auto l = read_list_file(splits_ + "/Places_LT_train.txt");
  EXPECT_EQ(l.size(), 62500);
  EXPECT_EQ(l.num_classes, 365);
  const auto s = class_stats(l.class_counts());
  EXPECT_EQ(s.total, 62500);
  EXPECT_EQ(s.min_count, 5);
  EXPECT_EQ(s.max_count, 4980);
  EXPECT_EQ(s.num_many + s.num_medium + s.num_few, 365);
  EXPECT_GT(s.num_few, 0);
  EXPECT_GT(s.num_head, 0);
  EXPECT_LT(s.num_head, 365);
  // The head is a prefix by count holding >= 90% of the images.
  int64_t head_images = 0, head_min = 1 << 30, tail_max = 0;
  for (int64_t c = 0; c < 365; ++c) {
    if (s.head[c]) {
      head_images += s.counts[c];
      head_min = std::min(head_min, s.counts[c]);
    } else {
      tail_max = std::max(tail_max, s.counts[c]);
    }
  }
  EXPECT_GE(head_images, 0.9 * 62500);
  EXPECT_GE(head_min, tail_max);
  const auto test = read_list_file(splits_ + "/Places_LT_test.txt");
  EXPECT_EQ(test.size(), 36500);
  for (auto n : test.class_counts()) EXPECT_EQ(n, 100);
  const auto val = read_list_file(splits_ + "/Places_LT_val.txt");
  EXPECT_EQ(val.size(), 7300);
  for (auto n : val.class_counts()) EXPECT_EQ(n, 20);
}

TEST_F(SharedSplits, ImageNetLtTestAndVal) {
  const auto test = read_list_file(splits_ + "/ImageNet_LT_test.txt", {"/imagenet", false, 0});
  EXPECT_EQ(test.size(), 50000);
  EXPECT_EQ(test.num_classes, 1000);
  for (auto n : test.class_counts()) ASSERT_EQ(n, 50);
  EXPECT_EQ(test.samples[0].path.rfind("/imagenet/val/ILSVRC2012_val_", 0), 0u);
  const auto val = read_list_file(splits_ + "/ImageNet_LT_val.txt");
  EXPECT_EQ(val.size(), 20000);
  EXPECT_EQ(val.num_classes, 1000);
  for (auto n : val.class_counts()) ASSERT_EQ(n, 20);
}

TEST_F(SharedSplits, ImageNetLtClassCounts) {
  const auto counts = read_npy_int64(splits_ + "/class_count_ImageNet_LT.npy");
  ASSERT_EQ(counts.size(), 1000u);
  const auto s = class_stats(counts);
  EXPECT_EQ(s.total, 115846);
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), int64_t{0}), 115846);
  EXPECT_EQ(s.min_count, 5);
  EXPECT_EQ(s.max_count, 1280);
  EXPECT_EQ(s.num_many, 385);
  EXPECT_EQ(s.num_medium, 479);
  EXPECT_EQ(s.num_few, 136);
}

TEST(ListDataset, ReadsTheListsAConfigNames) {
  TempDir dir;
  fs::create_directories(dir / "root");
  write_text(dir / "root/train.txt", "a/1.jpg 0\na/2.jpg 0\nb/1.jpg 1\nc/1.jpg 2\n");
  write_text(dir / "root/test.txt", "t/1.jpg 2\nt/2.jpg 0\n");
  write_text(dir / "val.txt", "v/1.jpg 1\n");
  io::DatasetConfig d;
  d.name = "ListFile-LT";
  d.root = dir / "root";
  d.train_list = "train.txt";  // relative: from the root
  d.test_list = "test.txt";
  d.val_list = dir / "val.txt";  // absolute
  io::FinetuneConfig split;
  split.head_ratio = 0.5;
  const auto ds = read_list_dataset(d, split);
  EXPECT_EQ(ds.num_classes(), 3);
  EXPECT_EQ(ds.train.size(), 4);
  EXPECT_EQ(ds.test.size(), 2);
  EXPECT_EQ(ds.val.size(), 1);
  EXPECT_EQ(ds.train.samples[2].path, (fs::path(dir / "root") / "b/1.jpg").string());
  EXPECT_EQ(ds.stats.counts, (std::vector<int64_t>{2, 1, 1}));
  EXPECT_EQ(ds.stats.head, (std::vector<bool>{true, false, false}));
  // A test label beyond the training classes, a class without training images.
  write_text(dir / "root/test.txt", "t/1.jpg 3\n");
  EXPECT_NE(data_error([&] { read_list_dataset(d, split); }).find("test.txt:1: label 3"),
            std::string::npos);
  d.num_classes = 4;
  EXPECT_NE(data_error([&] { read_list_dataset(d, split); }).find("class 3 of 4 has no training"),
            std::string::npos);
  d.name = "CIFAR-10-LT";
  EXPECT_THROW(read_list_dataset(d, split), io::ConfigError);
}

TEST(ListDataset, RepeatedImagesAndSplitsSharingImagesAreSaid) {
  TempDir dir;
  fs::create_directories(dir / "root");
  write_text(dir / "root/train.txt", "a/1.jpg 0\nb/1.jpg 1\na/1.jpg 0\nc/1.jpg 1\nb/1.jpg 1\n");
  write_text(dir / "root/test.txt", "t/1.jpg 0\nb/1.jpg 1\n");
  io::DatasetConfig d;
  d.name = "ListFile-LT";
  d.root = dir / "root";
  d.train_list = "train.txt";
  d.test_list = "test.txt";
  io::FinetuneConfig split;
  {
    fsa::testing::LogCapture log;
    const auto ds = read_list_dataset(d, split);
    EXPECT_EQ(ds.train.size(), 5);  // repeats are kept: some over-sample that way
    EXPECT_NE(log.text().find("2 lines repeat an image listed earlier (first: line 3 repeats "
                              "line 1)"),
              std::string::npos)
        << log.text();
    EXPECT_NE(log.text().find("1 of its 2 test images are also training images"), std::string::npos)
        << log.text();
  }
  // One image, two labels: no way to know which is meant.
  write_text(dir / "root/train.txt", "a/1.jpg 0\nb/1.jpg 1\na/1.jpg 1\n");
  EXPECT_NE(data_error([&] {
              read_list_dataset(d, split);
            }).find("train.txt:3: 'a/1.jpg' is labelled 1 here and 0 on line 1"),
            std::string::npos);
  // The training list as the validation list would choose epochs on training images.
  write_text(dir / "root/train.txt", "a/1.jpg 0\nb/1.jpg 1\n");
  d.val_list = dir / "root/train.txt";
  EXPECT_NE(fsa::testing::error_message<io::ConfigError>([&] {
              read_list_dataset(d, split);
            }).find("is the training list"),
            std::string::npos);
}

TEST_F(SharedSplits, PlacesLtThroughAConfig) {
  io::DatasetConfig d;
  d.name = "Places-LT";
  d.root = "/places365";
  d.train_list = splits_ + "/Places_LT_train.txt";
  d.val_list = splits_ + "/Places_LT_val.txt";
  d.test_list = splits_ + "/Places_LT_test.txt";
  d.num_classes = 365;
  const auto ds = read_list_dataset(d, io::FinetuneConfig{});
  EXPECT_EQ(ds.num_classes(), 365);
  EXPECT_EQ(ds.stats.total, 62500);
  EXPECT_EQ(ds.stats.num_many + ds.stats.num_medium + ds.stats.num_few, 365);
  EXPECT_EQ(ds.test.size(), 36500);
  EXPECT_EQ(ds.train.samples[0].path, "/places365/data_256/a/airfield/00004851.jpg");
}

}  // namespace
}  // namespace fsa::data
