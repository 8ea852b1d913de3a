#include "fsa/train/predict.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "fsa/cam/cam.h"
#include "fsa/data/image_set.h"
#include "fsa/data/image_transforms.h"
#include "fsa/data/long_tail.h"
#include "fsa/io/config.h"
#include "fsa/io/files.h"
#include "fsa/io/torch_file.h"
#include "fsa/train/checkpoint.h"
#include "fsa/train/phases.h"
#include "fsa/train/precision.h"
#include "fsa/train/pretrained.h"
#ifndef FSA_NO_OPENCV
#include "fsa/viz/overlay.h"
#endif

namespace fs = std::filesystem;

namespace fsa::train {
namespace {

/// The network and what goes with it.
struct Network {
  std::shared_ptr<models::Backbone> model;
  std::vector<std::string> class_names;
  data::Preprocessing preprocessing;
  std::string cam_layer, source;
};

std::vector<std::string> index_names(int64_t n) {
  std::vector<std::string> out;
  for (int64_t c = 0; c < n; ++c) out.push_back(std::to_string(c));
  return out;
}

/// A checkpoint written before checkpoints recorded their preprocessing: the
/// one its recorded dataset config implies.
data::Preprocessing preprocessing_from_config(const CheckpointInfo& info,
                                              const std::string& path) {
  try {
    const auto cfg = io::parse_config(YAML::Load(info.config), "the config in '" + path + "'");
    auto p = data::recorded_preprocessing(cfg.dataset);
    spdlog::info("predict: '{}' does not record its preprocessing (written by an older fsa); "
                 "using what its dataset config implies", path);
    return p;
  } catch (const std::exception& e) {
    throw CheckpointError(fmt::format(
        "checkpoint '{}' does not record how images become its input (written by fsa before "
        "2026-12-02), and its dataset config does not tell: {}",
        path, e.what()));
  }
}

Network open_checkpoint(const PredictOptions& opts) {
  CheckpointInfo info;
  Network net;
  net.model = load_checkpoint_model(opts.checkpoint, &info);
  if (!opts.model.empty() && opts.model != info.arch) {
    throw io::ConfigError(fmt::format("--model {}: checkpoint '{}' holds {}; leave --model out "
                                      "for fsa checkpoints",
                                      opts.model, opts.checkpoint, info.arch));
  }
  net.class_names = info.class_names.empty() ? index_names(info.num_classes) : info.class_names;
  if (info.preprocessing.empty()) {
    net.preprocessing = preprocessing_from_config(info, opts.checkpoint);
  } else {
    try {
      net.preprocessing = data::Preprocessing::from_json(nlohmann::json::parse(info.preprocessing));
    } catch (const std::exception& e) {
      throw CheckpointError(
          fmt::format("checkpoint '{}': its 'preprocessing' entry is unreadable: {}",
                      opts.checkpoint, e.what()));
    }
  }
  net.cam_layer = info.cam_layer.empty() ? net.model->stage_names().back() : info.cam_layer;
  net.source = fmt::format("{} with {} classes from '{}' ({}, epoch {})", info.arch,
                           info.num_classes, opts.checkpoint, info.phase, info.epoch);
  return net;
}

Network open_state_dict(const PredictOptions& opts) {
  io::StateDict state;
  try {
    state = io::read_state_dict(opts.checkpoint);
  } catch (const std::exception& e) {
    throw CheckpointError(e.what());
  }
  int64_t classes = 0;
  for (const auto& [name, tensor] : state) {
    const bool head = name == "fc.weight" || name == "linear.weight" ||
                      (name.size() > 10 && name.compare(name.size() - 10, 10, ".fc.weight") == 0);
    if (head && tensor.dim() == 2) {
      classes = tensor.size(0);
      break;
    }
  }
  if (classes == 0) {
    throw CheckpointError(fmt::format(
        "'{}' holds no classifier ('fc.weight' or 'linear.weight'), so its classes are not "
        "known",
        opts.checkpoint));
  }
  Network net;
  try {
    net.model = models::make_model(opts.model, classes);
  } catch (const std::invalid_argument& e) {
    throw io::ConfigError(fmt::format("--model: {}", e.what()));
  }
  load_pretrained(opts.checkpoint, *net.model);
  net.model->eval();
  net.class_names = index_names(classes);
  auto& p = net.preprocessing;
  if (net.model->input_size() == 224) {  // torchvision's ImageNet evaluation transform
    p.geometry = data::Geometry::kResizeCenterCrop;
    p.resize = opts.resize > 0 ? opts.resize : 256;
    p.crop = opts.crop > 0 ? opts.crop : 224;
    p.mean = data::kImageNetMean;
    p.std = data::kImageNetStd;
  } else {
    if (opts.resize > 0 || opts.crop > 0) {
      throw io::ConfigError(fmt::format(
          "--resize/--crop apply to ImageNet ResNets; {} takes 32×32 images", opts.model));
    }
    p.height = p.width = 32;
    p.mean = {0.4914, 0.4822, 0.4465};  // CIFAR-10's, as the usual CIFAR ResNet scripts
    p.std = {0.2023, 0.1994, 0.2010};
  }
  net.cam_layer = net.model->stage_names().back();
  net.source = fmt::format("{} with {} classes from the state_dict '{}'", opts.model, classes,
                           opts.checkpoint);
  return net;
}

/// An fsa checkpoint, or a state_dict when --model names the network.
Network open_network(const PredictOptions& opts) {
  if (const auto problem = io::file_problem(opts.checkpoint); !problem.empty()) {
    throw CheckpointError(fmt::format("--checkpoint '{}' {}", opts.checkpoint, problem));
  }
  bool fsa_file = false;
  try {
    const auto value = io::read_torch_file(opts.checkpoint);
    fsa_file = value.isGenericDict() && value.toGenericDict().contains("arch") &&
               value.toGenericDict().contains("state_dict");
  } catch (const std::exception& e) {
    throw CheckpointError(e.what());
  }
  if (fsa_file) return open_checkpoint(opts);
  if (opts.model.empty()) {
    throw io::ConfigError(fmt::format(
        "--checkpoint '{}' is not an fsa checkpoint; for a PyTorch state_dict give the network "
        "with --model (e.g. --model resnet18)",
        opts.checkpoint));
  }
  return open_state_dict(opts);
}

bool resolve_precision(const PredictOptions& opts, torch::Device device) {
  if (opts.precision == "fp32") return false;
  if (opts.precision == "bf16-mixed") return true;
  if (opts.precision == "auto") return device.is_cpu() && io::native_bf16_cpu();
  throw io::ConfigError(fmt::format("--precision '{}': expected auto, fp32 or bf16-mixed",
                                    opts.precision));
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

int64_t top_k_of(const Predictions& p) {
  int64_t k = 0;
  for (const auto& image : p.images) k = std::max<int64_t>(k, image.classes.size());
  return k;
}

}  // namespace

int64_t Predictions::failed() const {
  return std::count_if(images.begin(), images.end(),
                       [](const ImagePrediction& i) { return !i.error.empty(); });
}

Predictions predict(const PredictOptions& opts) {
  if (opts.images.empty()) {
    throw io::ConfigError("predict: no images given (IMAGE..., --list FILE or --folder DIR)");
  }
  if (opts.top_k < 1) throw io::ConfigError("--top-k must be at least 1");
  if (opts.batch_size < 1) throw io::ConfigError("--batch must be at least 1");
  const auto hw = std::max(1u, std::thread::hardware_concurrency());
  torch::set_num_threads(opts.threads > 0 ? opts.threads : static_cast<int>(hw));
  const auto device = parse_device(opts.device);
  const bool bf16 = resolve_precision(opts, device);
#ifdef FSA_NO_OPENCV
  throw io::ConfigError("predict: this fsa was built without OpenCV, which decodes the images");
#endif
  auto net = open_network(opts);
  auto& model = *net.model;
  model.to(device);
  const auto& prep = net.preprocessing;
  const auto last = model.stage_names().back();
  const int64_t n = static_cast<int64_t>(opts.images.size());
  const int64_t classes = model.num_classes();
  const auto k = std::min(opts.top_k, classes);
  Predictions out;
  out.class_names = net.class_names;
  out.preprocessing = prep;
  out.source = net.source;
  out.images.resize(static_cast<size_t>(n));
  const auto nan = std::numeric_limits<float>::quiet_NaN();
  out.logits = torch::full({n, classes}, nan);
  out.features = torch::full({n, model.channels_at(last)}, nan);
  spdlog::info("predict: {} images through {}; {}{}", n, net.source, prep.describe(),
               bf16 ? "; bf16-mixed" : "");

  for (int64_t start = 0; start < n; start += opts.batch_size) {
    const auto len = std::min(opts.batch_size, n - start);
    std::vector<torch::Tensor> pixels(static_cast<size_t>(len));
    at::parallel_for(0, len, 1, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        auto& result = out.images[static_cast<size_t>(start + j)];
        result.image = opts.images[static_cast<size_t>(start + j)];
        try {
          pixels[static_cast<size_t>(j)] = prep.pixels(data::decode_image(result.image));
        } catch (const std::exception& e) {
          result.error = e.what();
        }
      }
    });
    std::vector<int64_t> ok;
    std::vector<torch::Tensor> batch;
    for (int64_t j = 0; j < len; ++j) {
      const auto& result = out.images[static_cast<size_t>(start + j)];
      if (result.error.empty()) {
        ok.push_back(start + j);
        batch.push_back(pixels[static_cast<size_t>(j)]);
      } else {
        spdlog::warn("predict: {}", result.error);
      }
    }
    if (ok.empty()) continue;
    const auto picture = torch::stack(batch);
    const auto x = prep.input(picture).to(device);
    torch::Tensor logits, pooled;
    {
      torch::NoGradGuard no_grad;
      AutocastGuard autocast(device, bf16);
      const auto a = model.features(x, last);
      logits = model.head(a, last).to(torch::kFloat32).cpu();
      pooled = a.to(torch::kFloat32).mean({2, 3}).cpu();
    }
    const auto rows = torch::tensor(ok);
    if (!torch::isfinite(logits).all().item<bool>()) {
      throw TrainingError(fmt::format(
          "predict: the network of '{}' gives non-finite logits (for '{}' and maybe others): "
          "its weights have diverged or are damaged, so its predictions mean nothing",
          opts.checkpoint, opts.images[static_cast<size_t>(ok.front())]));
    }
    out.logits.index_copy_(0, rows, logits);
    out.features.index_copy_(0, rows, pooled);
    const auto [probs, top] = torch::softmax(logits, 1).topk(k, 1);
    for (size_t i = 0; i < ok.size(); ++i) {
      auto& result = out.images[static_cast<size_t>(ok[i])];
      for (int64_t r = 0; r < k; ++r) {
        result.classes.push_back(top[int64_t(i)][r].item<int64_t>());
        result.probabilities.push_back(probs[int64_t(i)][r].item<double>());
      }
    }
    if (!opts.cam_dir.empty()) {
#ifndef FSA_NO_OPENCV
      torch::Tensor a;
      {
        torch::NoGradGuard no_grad;
        a = model.features(x, net.cam_layer);
      }
      const auto predicted = top.select(1, 0).contiguous().to(device);
      const auto cams = cam::class_activation_maps(model, a, predicted, net.cam_layer).cpu();
      for (size_t i = 0; i < ok.size(); ++i) {
        auto& result = out.images[static_cast<size_t>(ok[i])];
        auto rgb = viz::to_rgb(picture[int64_t(i)]);
        rgb = viz::enlarge(rgb, viz::enlargement_for(rgb.size(0), rgb.size(1)));
        result.cam = (fs::path(opts.cam_dir) /
                      fmt::format("{:04d}_{}.png", ok[i],
                                  viz::sanitize_name(fs::path(result.image).stem().string())))
                         .string();
        viz::write_png(result.cam, viz::overlay_cam(rgb, cams[int64_t(i)]));
      }
#endif
    }
  }
  return out;
}

std::vector<std::string> images_in_folder(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw data::DataError(fmt::format("--folder '{}' is not a folder", dir));
  }
  std::vector<std::string> out;
  try {
    fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied), end;
    for (; it != end; ++it) {
      const auto name = it->path().filename().string();
      if (!name.empty() && name[0] == '.') {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (!it->is_regular_file()) continue;
      auto ext = it->path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp") {
        out.push_back(it->path().string());
      }
    }
  } catch (const fs::filesystem_error& e) {
    throw data::DataError(fmt::format("--folder '{}': {}", dir, e.what()));
  }
  if (out.empty()) {
    throw data::DataError(
        fmt::format("--folder '{}' holds no images (.jpg, .jpeg, .png or .bmp)", dir));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> images_in_list(const std::string& list, const std::string& root) {
  if (const auto problem = io::file_problem(list); !problem.empty()) {
    throw data::DataError(fmt::format("--list '{}' {}", list, problem));
  }
  std::ifstream in(list, std::ios::binary);
  if (!in) throw data::DataError(fmt::format("--list '{}' cannot be opened", list));
  std::vector<std::string> out;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
    if (line.find('\0') != std::string::npos) {
      throw data::DataError(fmt::format("--list {}:{}: the line holds a NUL byte", list, number));
    }
    auto path = trim(line);
    if (path.empty()) continue;
    const auto space = path.find_last_of(" \t");
    if (space != std::string::npos) {
      const auto last = path.substr(space + 1);
      if (std::all_of(last.begin(), last.end(), [](unsigned char c) { return std::isdigit(c); })) {
        path = trim(path.substr(0, space));  // `path label`
      }
    }
    out.push_back(root.empty() || fs::path(path).is_absolute() ? path
                                                               : (fs::path(root) / path).string());
  }
  if (in.bad()) throw data::DataError(fmt::format("--list '{}': read error", list));
  if (out.empty()) throw data::DataError(fmt::format("--list '{}' lists no image", list));
  return out;
}

std::string predictions_table(const Predictions& p) {
  size_t width = 5;
  for (const auto& image : p.images) width = std::max(width, image.image.size());
  width = std::min<size_t>(width, 60);
  auto shown = [&](const std::string& s) {
    return s.size() <= width ? s : "…" + s.substr(s.size() - (width - 1));
  };
  std::string out = fmt::format("{:<{}}  predictions (probability)\n", "image", width);
  for (const auto& image : p.images) {
    out += fmt::format("{:<{}}  ", shown(image.image), width);
    if (!image.error.empty()) {
      out += "not predicted: " + image.error + "\n";
      continue;
    }
    for (size_t r = 0; r < image.classes.size(); ++r) {
      out += fmt::format("{}{} ({:.1f}%)", r ? ", " : "",
                         p.class_names[static_cast<size_t>(image.classes[r])],
                         100 * image.probabilities[r]);
    }
    out += "\n";
  }
  return out;
}

nlohmann::json predictions_json(const Predictions& p) {
  auto rows = nlohmann::json::array();
  for (const auto& image : p.images) {
    nlohmann::json row{{"image", image.image}};
    if (!image.error.empty()) {
      row["error"] = image.error;
    } else {
      auto top = nlohmann::json::array();
      for (size_t r = 0; r < image.classes.size(); ++r) {
        const auto c = image.classes[r];
        top.push_back({{"class", c},
                       {"name", p.class_names[static_cast<size_t>(c)]},
                       {"probability", image.probabilities[r]}});
      }
      row["top"] = top;
      if (!image.cam.empty()) row["cam"] = image.cam;
    }
    rows.push_back(row);
  }
  return {{"source", p.source},
          {"preprocessing", p.preprocessing.to_json()},
          {"class_names", p.class_names},
          {"predictions", rows}};
}

std::string predictions_csv(const Predictions& p) {
  const auto k = top_k_of(p);
  std::string out = "image";
  for (int64_t r = 1; r <= k; ++r) out += fmt::format(",class_{0},name_{0},probability_{0}", r);
  out += ",error\n";
  for (const auto& image : p.images) {
    out += csv_field(image.image);
    for (int64_t r = 0; r < k; ++r) {
      if (r < static_cast<int64_t>(image.classes.size())) {
        const auto c = image.classes[static_cast<size_t>(r)];
        out += fmt::format(",{},{},{:.9g}", c, csv_field(p.class_names[static_cast<size_t>(c)]),
                           image.probabilities[static_cast<size_t>(r)]);
      } else {
        out += ",,,";
      }
    }
    out += "," + csv_field(image.error) + "\n";
  }
  return out;
}

}  // namespace fsa::train
