// What data-parallel training adds to each step: the gradient all-reduce of
// dist::average_gradients over Gloo on this machine's loopback, for the
// gradients of the networks fsa trains (docs/SCALING.md).
//
//   build/fsa_allreduce_bench [--models resnet32,resnet10,resnet50] [--ranks 2]
//                             [--iterations 10] [--json F]
//
// Each rank is a thread of this process with its own Gloo process group
// (TCP over 127.0.0.1, as two processes on one machine would use). For each
// network: its parameter count, the bytes one rank sends and receives per
// step in a ring all-reduce (2 (n − 1)/n of the gradient bytes), and the
// median wall time of average_gradients over `iterations` after one warm-up.
#include <fmt/format.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "fsa/dist/dist.h"
#include "fsa/models/backbone.h"
#include "fsa/train/runtime.h"

using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

/// CIFAR ResNets at CIFAR-10's 10 classes, ImageNet ones at 1,000.
int64_t classes_of(const std::string& name) {
  return fsa::models::make_model(name, 10)->input_size() == 224 ? 1000 : 10;
}

/// Median seconds of average_gradients of `model`'s gradients on `ranks` ranks.
double time_all_reduce(const std::string& name, int ranks, int iterations) {
  const int port = fsa::dist::free_loopback_port();
  std::vector<double> times;
  auto rank_main = [&](int rank) {
    fsa::dist::Launch l;
    l.rank = rank;
    l.world_size = ranks;
    l.master_port = port;
    auto group = fsa::dist::connect(l, "gloo", std::chrono::seconds(120));
    auto model = fsa::models::make_model(name, classes_of(name));
    for (auto& p : model->parameters()) p.mutable_grad() = torch::randn_like(p);
    for (int i = 0; i <= iterations; ++i) {
      group->barrier();
      const auto t0 = Clock::now();
      fsa::dist::average_gradients(model->parameters(), 32, 32 * ranks, *group);
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      if (rank == 0 && i > 0) times.push_back(s);
    }
  };
  std::vector<std::thread> others;
  for (int r = 1; r < ranks; ++r) others.emplace_back(rank_main, r);
  rank_main(0);
  for (auto& t : others) t.join();
  return median(times);
}

}  // namespace

int main(int argc, char** argv) {
  fsa::train::retain_freed_memory();  // as the fsa program does, before the first tensor
  CLI::App app{"gradient all-reduce over Gloo on loopback, per network"};
  std::string models = "resnet32,resnet10,resnet50", json;
  int ranks = 2, iterations = 10;
  app.add_option("--models", models, "networks (comma-separated)")->capture_default_str();
  app.add_option("--ranks", ranks, "ranks (threads, each with its own process group)")
      ->capture_default_str();
  app.add_option("--iterations", iterations, "timed all-reduces after one warm-up")
      ->capture_default_str();
  app.add_option("--json", json, "write the figures to this file");
  CLI11_PARSE(app, argc, argv);
  if (!fsa::dist::available()) {
    fmt::print(stderr, "fsa_allreduce_bench: this fsa was built without c10d and Gloo\n");
    return 2;
  }
  torch::set_num_threads(1);
  nlohmann::json out = nlohmann::json::array();
  fmt::print("{:<10} {:>12} {:>16} {:>14} {:>12}\n", "network", "parameters", "sent per rank",
             "median time", "bandwidth");
  std::stringstream list(models);
  for (std::string name; std::getline(list, name, ',');) {
    int64_t params = 0;
    for (const auto& p : fsa::models::make_model(name, classes_of(name))->parameters()) {
      params += p.numel();
    }
    const double bytes = 4.0 * double(params) * 2.0 * (ranks - 1) / ranks;
    const double s = time_all_reduce(name, ranks, iterations);
    fmt::print("{:<10} {:>12} {:>13.1f} MB {:>11.2f} ms {:>8.2f} GB/s\n", name, params, bytes / 1e6,
               1e3 * s, bytes / s / 1e9);
    out.push_back({{"network", name},
                   {"classes", classes_of(name)},
                   {"parameters", params},
                   {"ranks", ranks},
                   {"bytes_sent_per_rank", bytes},
                   {"median_seconds", s}});
  }
  if (!json.empty()) std::ofstream(json) << out.dump(2) << "\n";
  return 0;
}
