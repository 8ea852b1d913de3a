#include "fsa/data/image_set.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include "test_util.h"

namespace fsa::data {
namespace {

using fsa::testing::TempDir;
using fsa::testing::write_bytes;

std::vector<uint8_t> cifar_record(std::vector<uint8_t> label_bytes, uint8_t fill) {
  std::vector<uint8_t> r = label_bytes;
  for (int i = 0; i < 3072; ++i) r.push_back(static_cast<uint8_t>(fill + i % 7));
  return r;
}

TEST(CifarReader, ReadsRecordsAsChannelPlanes) {
  TempDir dir;
  auto bytes = cifar_record({3}, 10);
  auto second = cifar_record({9}, 20);
  bytes.insert(bytes.end(), second.begin(), second.end());
  write_bytes(dir / "b.bin", bytes);
  const auto set = read_cifar_batches({dir / "b.bin"}, 1, 10);
  ASSERT_EQ(set.size(), 2);
  EXPECT_EQ(set.labels[0].item<int64_t>(), 3);
  EXPECT_EQ(set.labels[1].item<int64_t>(), 9);
  EXPECT_EQ(set.images.sizes(), torch::IntArrayRef({2, 3, 32, 32}));
  // Pixel byte p of a record is channel p/1024, row (p%1024)/32, column p%32.
  for (int p : {0, 1, 1023, 1024, 2047, 3071}) {
    EXPECT_EQ(set.images[1][p / 1024][(p % 1024) / 32][p % 32].item<int>(), 20 + p % 7) << p;
  }
}

TEST(CifarReader, Cifar100KeepsTheFineLabel) {
  TempDir dir;
  write_bytes(dir / "train.bin", cifar_record({4, 87}, 0));
  const auto set = read_cifar_batches({dir / "train.bin"}, 2, 100);
  EXPECT_EQ(set.labels[0].item<int64_t>(), 87);
}

TEST(CifarReader, TruncatedFileNamesFileAndSize) {
  TempDir dir;
  auto bytes = cifar_record({1}, 0);
  bytes.resize(bytes.size() - 5);
  write_bytes(dir / "short.bin", bytes);
  try {
    read_cifar_batches({dir / "short.bin"}, 1, 10);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("short.bin"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

TEST(CifarReader, LabelOutOfRangeNamesRecord) {
  TempDir dir;
  auto bytes = cifar_record({1}, 0);
  auto bad = cifar_record({12}, 0);
  bytes.insert(bytes.end(), bad.begin(), bad.end());
  write_bytes(dir / "bad.bin", bytes);
  try {
    read_cifar_batches({dir / "bad.bin"}, 1, 10);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("record 1: label 12"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_cifar_batches({dir / "missing.bin"}, 1, 10), DataError);
}

std::vector<uint8_t> idx_images(uint32_t n, uint32_t h, uint32_t w) {
  std::vector<uint8_t> b{0, 0, 8, 3};
  for (uint32_t v : {n, h, w}) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
  }
  for (uint32_t i = 0; i < n * h * w; ++i) b.push_back(uint8_t(i * 3));
  return b;
}

std::vector<uint8_t> idx_labels(const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> b{0, 0, 8, 1, 0, 0, 0, uint8_t(labels.size())};
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  gzwrite(gz, bytes.data(), unsigned(bytes.size()));
  gzclose(gz);
}

TEST(IdxReader, ReadsPlainAndGzipped) {
  TempDir dir;
  write_bytes(dir / "img", idx_images(3, 2, 4));
  write_bytes(dir / "lab", idx_labels({0, 7, 2}));
  write_gzip(dir / "img.gz", idx_images(3, 2, 4));
  write_gzip(dir / "lab.gz", idx_labels({0, 7, 2}));
  for (const auto& [img, lab] : {std::pair{dir / "img", dir / "lab"},
                                 std::pair{dir / "img.gz", dir / "lab.gz"}}) {
    const auto set = read_idx(img, lab, 10);
    ASSERT_EQ(set.images.sizes(), torch::IntArrayRef({3, 1, 2, 4}));
    EXPECT_EQ(set.labels[1].item<int64_t>(), 7);
    // Image 2, row 1, column 3 is byte 2·8 + 1·4 + 3 = 23, value 69.
    EXPECT_EQ(set.images[2][0][1][3].item<int>(), 69);
  }
}

TEST(IdxReader, BadMagicTruncationAndLabelRange) {
  TempDir dir;
  auto img = idx_images(3, 2, 4);
  write_bytes(dir / "lab", idx_labels({0, 7, 2}));
  auto bad_magic = img;
  bad_magic[3] = 2;
  write_bytes(dir / "magic", bad_magic);
  EXPECT_THROW(read_idx(dir / "magic", dir / "lab", 10), DataError);
  auto truncated = img;
  truncated.resize(truncated.size() - 1);
  write_bytes(dir / "trunc", truncated);
  try {
    read_idx(dir / "trunc", dir / "lab", 10);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("trunc"), std::string::npos);
  }
  write_bytes(dir / "img", img);
  EXPECT_THROW(read_idx(dir / "img", dir / "lab", 5), DataError);  // label 7 >= 5
  // A gzip stream cut in half is reported, not silently shortened.
  write_gzip(dir / "full.gz", img);
  auto gz = fsa::testing::read_text(dir / "full.gz");
  write_bytes(dir / "cut.gz", std::vector<uint8_t>(gz.begin(), gz.begin() + gz.size() / 2));
  EXPECT_THROW(read_idx(dir / "cut.gz", dir / "lab", 10), DataError);
}

TEST(ImageFolder, ListsSortedClassesAndDecodesRgb) {
  TempDir dir;
  fsa::testing::make_image_folder(dir.path(), {2, 3}, 1);
  std::vector<std::string> classes;
  const auto files = list_image_folder(dir / "train", &classes);
  EXPECT_EQ(classes, (std::vector<std::string>{"class_0", "class_1"}));
  ASSERT_EQ(files.size(), 5u);
  EXPECT_EQ(files[2].label, 1);
  const auto set = decode_images(files, classes, 2);
  EXPECT_EQ(set.images.sizes(), torch::IntArrayRef({5, 3, 32, 32}));
  const auto mat = cv::imread(files[3].path, cv::IMREAD_COLOR);  // BGR
  EXPECT_EQ(set.images[3][0][5][6].item<int>(), mat.at<cv::Vec3b>(5, 6)[2]);  // R
  EXPECT_EQ(set.images[3][2][5][6].item<int>(), mat.at<cv::Vec3b>(5, 6)[0]);  // B
}

TEST(ImageFolder, CorruptImageIsNamed) {
  TempDir dir;
  fsa::testing::make_image_folder(dir.path(), {2}, 1);
  write_bytes(dir / "train/class_0/0001.png", {1, 2, 3});
  std::vector<std::string> classes;
  const auto files = list_image_folder(dir / "train", &classes);
  try {
    decode_images(files, classes, 1);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("0001.png"), std::string::npos) << e.what();
  }
  EXPECT_THROW(list_image_folder(dir / "nope", &classes), DataError);
}

}  // namespace
}  // namespace fsa::data
