#include "fsa/data/image_set.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <opencv2/imgcodecs.hpp>

#include "fsa/data/image_transforms.h"
#include "fsa/data/long_tail.h"
#include "test_util.h"

namespace fsa::data {
namespace {

using fsa::testing::TempDir;
using fsa::testing::idx_images;
using fsa::testing::idx_labels;
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
  {
    const auto message = fsa::testing::error_message<DataError>(
        [&] { read_cifar_batches({dir / "bad.bin"}, 1, 10); });
    EXPECT_NE(message.find("record 1: label 12"), std::string::npos) << message;
  }
  EXPECT_THROW(read_cifar_batches({dir / "missing.bin"}, 1, 10), DataError);
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
  {
    const auto message =
        fsa::testing::error_message<DataError>([&] { decode_images(files, classes, 1); });
    EXPECT_NE(message.find("0001.png"), std::string::npos) << message;
  }
  EXPECT_THROW(list_image_folder(dir / "nope", &classes), DataError);
}

TEST(IdxReader, ImpossibleSidesAreNamedBeforeAnyProduct) {
  TempDir dir;
  write_bytes(dir / "lab", idx_labels({0}));
  for (const auto& [h, w] : {std::pair<uint32_t, uint32_t>{1u << 30, 1u << 30}, {0, 28}}) {
    auto header = idx_images(0, 0, 0);
    header.resize(16);
    for (int s = 24, k = 8; s >= 0; s -= 8, ++k) header[k] = uint8_t(h >> s);
    for (int s = 24, k = 12; s >= 0; s -= 8, ++k) header[k] = uint8_t(w >> s);
    header[7] = 1;  // one image
    write_bytes(dir / "img", header);
    {
      const auto message =
          fsa::testing::error_message<DataError>([&] { read_idx(dir / "img", dir / "lab", 10); });
      EXPECT_NE(message.find("expected sides of 1 to 65535"), std::string::npos) << message;
    }
  }
}

TEST(DataFiles, PipesFoldersAndDevicesAreRefusedByName) {
  TempDir dir;
  const auto fifo = dir / "fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::filesystem::create_directories(dir / "folder");
  const std::vector<std::pair<std::string, std::string>> cases{
      {fifo, "is a named pipe (FIFO), not a file"},
      {dir / "folder", "is a folder, not a file"},
      {"/dev/zero", "is a device, not a file"},
      {dir / "missing", "does not exist"}};
  for (const auto& [path, expected] : cases) {
    const std::vector<std::string> messages{
        fsa::testing::error_message<DataError>([&] { read_cifar_batches({path}, 1, 10); }),
        fsa::testing::error_message<DataError>([&] { read_idx(path, path, 10); }),
        fsa::testing::error_message<DataError>([&] { decode_image(path); })};
    for (const auto& message : messages) {
      EXPECT_NE(message.find("'" + path + "' " + expected), std::string::npos) << message;
    }
  }
}

TEST(ImageFolder, HiddenEntriesAreSkipped) {
  TempDir dir;
  fsa::testing::make_image_folder(dir.path(), {2, 3}, 1);
  // Jupyter's checkpoint folder would sort first and become class 0.
  std::filesystem::create_directories(dir / "train/.ipynb_checkpoints");
  std::filesystem::copy_file(dir / "train/class_0/0000.png",
                             dir / "train/.ipynb_checkpoints/x.png");
  std::filesystem::copy_file(dir / "train/class_1/0000.png", dir / "train/class_1/.0000.png");
  std::vector<std::string> classes;
  const auto files = list_image_folder(dir / "train", &classes);
  EXPECT_EQ(classes, (std::vector<std::string>{"class_0", "class_1"}));
  EXPECT_EQ(files.size(), 5u);
}

TEST(ImageFolder, EveryImageIsRgbOfOneSize) {
  TempDir dir;
  fsa::testing::make_image_folder(dir.path(), {3}, 1);
  // A grayscale image first no longer makes the whole set grayscale.
  cv::Mat gray(32, 32, CV_8UC1, cv::Scalar(77));
  ASSERT_TRUE(cv::imwrite(dir / "train/class_0/0000.png", gray));
  std::vector<std::string> classes;
  auto files = list_image_folder(dir / "train", &classes);
  const auto set = decode_images(files, classes, 2);
  ASSERT_EQ(set.images.sizes(), torch::IntArrayRef({3, 3, 32, 32}));
  EXPECT_TRUE(torch::all(set.images[0] == 77).item<bool>());  // R = G = B = the gray value
  // Another size is named, with the image that set the size.
  ASSERT_TRUE(cv::imwrite(dir / "train/class_0/0002.png", cv::Mat(16, 16, CV_8UC3)));
  {
    const auto message =
        fsa::testing::error_message<DataError>([&] { decode_images(files, classes, 2); });
    EXPECT_NE(message.find("0002.png' is 16x16, expected 32x32 like"), std::string::npos)
        << message;
  }
}

TEST(ImageFolder, TruncatedJpegsAreRefusedOrSkippedAsInListFiles) {
  TempDir dir;
  fsa::testing::make_image_folder(dir.path(), {3}, 1);
  std::vector<uint8_t> jpeg;
  cv::imencode(".jpg", cv::Mat(32, 32, CV_8UC3, cv::Scalar(1, 2, 3)), jpeg);
  jpeg.resize(jpeg.size() / 2);  // libjpeg alone would decode the half with a warning
  write_bytes(dir / "train/class_0/0001.jpg", jpeg);
  std::vector<std::string> classes;
  const auto files = list_image_folder(dir / "train", &classes);
  ASSERT_EQ(files.size(), 4u);
  {
    const auto message =
        fsa::testing::error_message<DataError>([&] { decode_images(files, classes, 2); });
    EXPECT_NE(message.find("0001.jpg' is a truncated JPEG"), std::string::npos) << message;
  }
  std::vector<int64_t> decoded;
  const auto set = decode_images(files, classes, 2, /*skip_corrupt=*/true, &decoded);
  EXPECT_EQ(set.size(), 3);
  EXPECT_EQ(decoded, (std::vector<int64_t>{0, 2, 3}));  // 0000.png, [0001.jpg], 0001.png, 0002.png
}

/// A PNG whose header claims width × height (a valid IHDR with its CRC) and
/// no image data.
std::vector<uint8_t> png_header_only(uint32_t width, uint32_t height) {
  std::vector<uint8_t> b{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};
  std::vector<uint8_t> chunk{'I', 'H', 'D', 'R'};
  for (uint32_t v : {width, height}) {
    for (int s = 24; s >= 0; s -= 8) chunk.push_back(uint8_t(v >> s));
  }
  for (uint8_t v : {8, 2, 0, 0, 0}) chunk.push_back(v);  // 8-bit RGB
  const auto crc = crc32(0, chunk.data(), unsigned(chunk.size()));
  b.insert(b.end(), chunk.begin(), chunk.end());
  for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(crc >> s));
  return b;
}

TEST(ImageFolder, AHugeHeaderIsANamedErrorNotAnAbort) {
  TempDir dir;
  fsa::testing::make_image_folder(dir.path(), {2}, 1);
  for (const auto* name : {"0000.png", "0001.png"}) {  // as the first image and as a later one
    const auto path = dir / (std::string("train/class_0/") + name);
    const auto saved = fsa::testing::read_text(path);
    write_bytes(path, png_header_only(60000, 60000));
    std::vector<std::string> classes;
    const auto files = list_image_folder(dir / "train", &classes);
    {
      const auto message =
          fsa::testing::error_message<DataError>([&] { decode_images(files, classes, 2); });
      EXPECT_NE(message.find(name), std::string::npos) << message;
    }
    write_bytes(path, std::vector<uint8_t>(saved.begin(), saved.end()));
  }
}

TEST(LongTailDataset, TestImagesOfAnotherSizeOrNoneAreRefused) {
  TempDir dir;
  fsa::testing::make_image_folder(dir / "d", {4, 4}, 1);
  io::DatasetConfig d;
  d.name = "ImageFolder-LT";
  d.root = dir / "d";
  d.imbalance_factor = 1;
  io::FinetuneConfig split;
  EXPECT_EQ(load_long_tail_dataset(d, split, 0, 1).test.size(), 2);
  for (const auto* c : {"class_0", "class_1"}) {
    ASSERT_TRUE(
        cv::imwrite(dir / (std::string("d/test/") + c + "/0000.png"), cv::Mat(16, 16, CV_8UC3)));
  }
  {
    const auto message =
        fsa::testing::error_message<DataError>([&] { load_long_tail_dataset(d, split, 0, 1); });
    EXPECT_NE(message.find("test images are [3, 16, 16]"), std::string::npos) << message;
  }
  for (const auto* c : {"class_0", "class_1"}) {
    std::filesystem::remove(dir / (std::string("d/test/") + c + "/0000.png"));
  }
  {
    const auto message =
        fsa::testing::error_message<DataError>([&] { load_long_tail_dataset(d, split, 0, 1); });
    EXPECT_NE(message.find("test' holds no images"), std::string::npos) << message;
  }
}

TEST(LongTailDataset, MnistFamilyImagesAre28By28AndTheTestSplitNotEmpty) {
  TempDir dir;
  std::vector<uint8_t> labels(10);
  std::iota(labels.begin(), labels.end(), 0);
  auto write = [&](uint32_t train_h, uint32_t train_w, uint32_t test_n) {
    write_bytes(dir / "train-images-idx3-ubyte", idx_images(10, train_h, train_w));
    write_bytes(dir / "train-labels-idx1-ubyte", idx_labels(labels));
    write_bytes(dir / "t10k-images-idx3-ubyte", idx_images(test_n, 28, 28));
    write_bytes(dir / "t10k-labels-idx1-ubyte",
                idx_labels(std::vector<uint8_t>(labels.begin(), labels.begin() + test_n)));
  };
  io::DatasetConfig d;
  d.name = "Fashion-MNIST-LT";
  d.root = dir.path();
  d.imbalance_factor = 1;
  io::FinetuneConfig split;
  write(28, 28, 10);
  EXPECT_EQ(load_long_tail_dataset(d, split, 0, 1).train.images.size(2), 32);  // padded
  write(14, 56, 10);  // the same bytes per image, other sides
  {
    const auto message =
        fsa::testing::error_message<DataError>([&] { load_long_tail_dataset(d, split, 0, 1); });
    EXPECT_NE(message.find("training IDX images are 56x14"), std::string::npos) << message;
  }
  write(28, 28, 0);
  {
    const auto message =
        fsa::testing::error_message<DataError>([&] { load_long_tail_dataset(d, split, 0, 1); });
    EXPECT_NE(message.find("the test split has no images"), std::string::npos) << message;
  }
}

TEST(LongTailDataset, EmptyClassFoldersAndTinyImagesAreNamedDataErrors) {
  TempDir dir;
  fsa::testing::make_image_folder(dir / "d", {4, 4}, 1);
  io::DatasetConfig d;
  d.name = "ImageFolder-LT";
  d.root = dir / "d";
  d.imbalance_factor = 1;
  io::FinetuneConfig split;
  // A class folder holding only a text file: named, not blamed on subsampling.
  std::filesystem::create_directories(dir / "d/train/class_2");
  std::filesystem::create_directories(dir / "d/test/class_2");
  std::ofstream(dir / "d/train/class_2/notes.txt") << "x";
  {
    const auto message =
        fsa::testing::error_message<DataError>([&] { load_long_tail_dataset(d, split, 0, 1); });
    EXPECT_NE(message.find("train/class_2' holds no images"), std::string::npos) << message;
  }
  std::filesystem::remove_all(dir / "d/train/class_2");
  std::filesystem::remove_all(dir / "d/test/class_2");
  // 4x4 images: refused as data, not left to diverge.
  for (const auto* split_name : {"train", "test"}) {
    for (const auto& e :
         std::filesystem::recursive_directory_iterator(dir / (std::string("d/") + split_name))) {
      if (e.is_regular_file()) cv::imwrite(e.path().string(), cv::Mat(4, 4, CV_8UC3));
    }
  }
  {
    const auto message =
        fsa::testing::error_message<DataError>([&] { load_long_tail_dataset(d, split, 0, 1); });
    EXPECT_NE(message.find("the images are 4x4 pixels"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace fsa::data
