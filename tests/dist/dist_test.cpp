// Data-parallel training's pieces: the launch read from torchrun's and
// SLURM's variables, and collectives of two ranks over Gloo on 127.0.0.1
// (two threads of this process, each with its own process group).
#include "fsa/dist/dist.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <thread>

#include "fsa/io/config.h"
#include "fsa/models/backbone.h"
#include "fsa/models/batch_norm.h"
#include "fsa/train/phases.h"
#include "test_util.h"

namespace fsa::dist {
namespace {

using Env = std::map<std::string, std::string>;

Launch launch_of(const Env& env) {
  return launch_from_environment([&](const char* name) -> const char* {
    const auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(Launch, FromTorchrunSlurmOrNothing) {
  const auto one = launch_of({});
  EXPECT_FALSE(one.distributed());
  EXPECT_EQ(one.launcher, "");
  const auto t = launch_of({{"RANK", "3"},
                            {"WORLD_SIZE", "8"},
                            {"LOCAL_RANK", "1"},
                            {"LOCAL_WORLD_SIZE", "2"},
                            {"MASTER_ADDR", "node7"},
                            {"MASTER_PORT", "29600"}});
  EXPECT_EQ(t.launcher, "torchrun");
  EXPECT_EQ(t.rank, 3);
  EXPECT_EQ(t.world_size, 8);
  EXPECT_EQ(t.local_rank, 1);
  EXPECT_EQ(t.local_world_size, 2);
  EXPECT_EQ(t.master_addr, "node7");
  EXPECT_EQ(t.master_port, 29600);
  const auto s = launch_of({{"SLURM_PROCID", "5"},
                            {"SLURM_NTASKS", "16"},
                            {"SLURM_LOCALID", "1"},
                            {"SLURM_NTASKS_PER_NODE", "4(x4)"}});
  EXPECT_EQ(s.launcher, "slurm");
  EXPECT_EQ(s.rank, 5);
  EXPECT_EQ(s.world_size, 16);
  EXPECT_EQ(s.local_world_size, 4);
  EXPECT_EQ(s.master_addr, "127.0.0.1");  // the defaults torchrun uses
  EXPECT_EQ(s.master_port, 29500);
  // Under torchrun's agent, every rank is a client of the agent's store.
  const auto agent = launch_of({{"RANK", "0"},
                                {"WORLD_SIZE", "2"},
                                {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                {"TORCHELASTIC_RESTART_COUNT", "1"}});
  EXPECT_TRUE(agent.agent_store);
  EXPECT_EQ(agent.restart_count, 1);
  EXPECT_FALSE(t.agent_store);
  // torchrun's variables win over SLURM's (torchrun inside an allocation).
  EXPECT_EQ(launch_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "1"}}).launcher,
            "torchrun");
}

TEST(Launch, MalformedVariablesAreNamed) {
  auto message = [](const Env& env) {
    return fsa::testing::error_message<io::ConfigError>([&] { launch_of(env); });
  };
  EXPECT_NE(message({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("RANK=2 is not below WORLD_SIZE=2"),
            std::string::npos);
  EXPECT_NE(message({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK='x'"), std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}}).find("WORLD_SIZE"), std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}})
                .find("MASTER_PORT='70000'"),
            std::string::npos);
  EXPECT_NE(message({{"SLURM_PROCID", "4"}, {"SLURM_NTASKS", "4"}}).find("SLURM_PROCID=4"),
            std::string::npos);
}

/// Runs body(rank, group) on two ranks, one thread each, over Gloo.
void on_two_ranks(const std::function<void(int, Group&)>& body,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  const int port = fsa::dist::free_loopback_port();
  std::vector<std::string> errors(2);
  auto rank_main = [&](int rank) {
    try {
      Launch l;
      l.rank = rank;
      l.world_size = 2;
      l.master_port = port;
      l.launcher = "test";
      auto group = connect(l, "gloo", timeout);
      body(rank, *group);
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(rank)] = e.what();
    }
  };
  std::thread other(rank_main, 1);
  rank_main(0);
  other.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

TEST(Gloo, AllReduceBroadcastAndGatherOnTwoRanks) {
  if (!available()) GTEST_SKIP() << "built without c10d and Gloo (libgloo-dev)";
  std::vector<torch::Tensor> sums(2), broadcast(2), gathered(2);
  on_two_ranks([&](int rank, Group& g) {
    EXPECT_EQ(g.size(), 2);
    EXPECT_EQ(g.rank(), rank);
    auto x = torch::tensor({1.0 + rank, 10.0 * (rank + 1)});
    g.all_reduce_sum_(x);
    sums[rank] = x;
    auto counts = torch::tensor({int64_t{rank}, int64_t{7}});  // int64 too (confusion counts)
    g.all_reduce_sum_(counts);
    EXPECT_TRUE(torch::equal(counts, torch::tensor({int64_t{1}, int64_t{14}})));
    auto b = torch::full({3}, 5.0f + rank);
    g.broadcast_(b, 1);
    broadcast[rank] = b;
    gathered[rank] = g.all_gather(torch::full({2}, float(rank)));
    g.barrier();
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(torch::equal(sums[r], torch::tensor({3.0, 30.0}))) << sums[r];
    EXPECT_TRUE(torch::equal(broadcast[r], torch::full({3}, 6.0f)));
    EXPECT_TRUE(torch::equal(gathered[r], torch::tensor({{0.0f, 0.0f}, {1.0f, 1.0f}})));
  }
}

TEST(Gloo, AveragedGradientsOfSharesAreTheGradientOfTheWholeBatch) {
  if (!available()) GTEST_SKIP() << "built without c10d and Gloo (libgloo-dev)";
  // A CIFAR ResNet-20 in evaluation mode (batch norm from running
  // statistics, so that a share's forward pass equals its rows of the
  // whole batch's), in float64: the gradient of the mean loss over 7
  // images, against ranks holding 4 and 3 of them (uneven shares).
  torch::manual_seed(2);
  const auto x = torch::randn({7, 3, 32, 32}, torch::kFloat64);
  const auto y = torch::tensor({0, 3, 1, 1, 2, 0, 3}, torch::kInt64);
  auto network = [] {  // made here, not in the rank threads: the seed is process-wide
    torch::manual_seed(9);
    auto model = models::make_model("resnet20", 4);
    model->to(torch::kFloat64);
    model->eval();
    return model;
  };
  auto backward = [&](models::Backbone& model, int64_t begin, int64_t end) {
    torch::nn::functional::cross_entropy(model.forward(x.slice(0, begin, end)),
                                         y.slice(0, begin, end))
        .backward();
  };
  const auto expected = network();
  backward(*expected, 0, 7);
  std::vector<std::shared_ptr<models::Backbone>> ranks{network(), network()};
  std::vector<std::vector<torch::Tensor>> grads(2);
  on_two_ranks([&](int rank, Group& g) {
    const int64_t begin = rank == 0 ? 0 : 4, end = rank == 0 ? 4 : 7;
    auto& model = *ranks[static_cast<size_t>(rank)];
    backward(model, begin, end);
    average_gradients(model.parameters(), end - begin, 7, g);
    for (const auto& p : model.parameters()) grads[rank].push_back(p.grad().clone());
  });
  const auto params = expected->parameters();
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(grads[r].size(), params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_TRUE(torch::allclose(grads[r][i], params[i].grad(), 1e-10, 1e-12))
          << "rank " << r << " parameter " << i << ": "
          << (grads[r][i] - params[i].grad()).abs().max().item<double>();
    }
  }
  // One process: nothing to do.
  Group single;
  auto model = network();
  backward(*model, 0, 7);
  const auto before = model->parameters()[0].grad().clone();
  average_gradients(model->parameters(), 7, 7, single);
  EXPECT_TRUE(torch::equal(model->parameters()[0].grad(), before));
}

TEST(Gloo, SyncBatchNormSharesTakeTheStepOfTheWholeBatch) {
  if (!available()) GTEST_SKIP() << "built without c10d and Gloo (libgloo-dev)";
  // A CIFAR ResNet-20 in training mode, float64, 7 images: one process
  // with torch's BatchNorm on all of them against ranks holding 4 and 3 with
  // synchronised BatchNorm. The logits of each share, the averaged
  // gradients and the running statistics are the whole batch's.
  torch::manual_seed(4);
  const auto x = torch::randn({7, 3, 32, 32}, torch::kFloat64);
  const auto y = torch::tensor({0, 3, 1, 1, 2, 0, 3}, torch::kInt64);
  auto network = [] {
    torch::manual_seed(9);
    auto model = models::make_model("resnet20", 4);
    model->to(torch::kFloat64);
    model->train();
    return model;
  };
  auto step = [&](models::Backbone& model, int64_t begin, int64_t end) {
    auto logits = model.forward(x.slice(0, begin, end));
    torch::nn::functional::cross_entropy(logits, y.slice(0, begin, end)).backward();
    return logits.detach();
  };
  const auto expected = network();
  const auto expected_logits = step(*expected, 0, 7);
  std::vector<std::shared_ptr<models::Backbone>> ranks{network(), network()};
  std::vector<torch::Tensor> logits(2);
  on_two_ranks([&](int rank, Group& g) {
    const int64_t begin = rank == 0 ? 0 : 4, end = rank == 0 ? 4 : 7;
    auto& model = *ranks[static_cast<size_t>(rank)];
    // Not owned: the group lives as long as this call.
    EXPECT_EQ(models::sync_batchnorm(model, std::shared_ptr<Group>(&g, [](Group*) {})), 19);
    logits[rank] = step(model, begin, end);
    average_gradients(model.parameters(), end - begin, 7, g);
    models::sync_batchnorm(model, nullptr);
  });
  EXPECT_TRUE(torch::allclose(torch::cat(logits), expected_logits, 1e-10, 1e-12))
      << (torch::cat(logits) - expected_logits).abs().max().item<double>();
  const auto params = expected->named_parameters();
  const auto buffers = expected->named_buffers();
  for (int r = 0; r < 2; ++r) {
    const auto mine = ranks[r]->named_parameters();
    for (const auto& p : params) {
      const auto& g = mine[p.key()].grad();
      EXPECT_TRUE(torch::allclose(g, p.value().grad(), 1e-9, 1e-11))
          << "rank " << r << " " << p.key() << ": "
          << (g - p.value().grad()).abs().max().item<double>();
    }
    const auto kept = ranks[r]->named_buffers();
    for (const auto& b : buffers) {
      EXPECT_TRUE(torch::allclose(kept[b.key()], b.value(), 1e-12, 1e-12))
          << "rank " << r << " " << b.key();
    }
  }
}

TEST(Gloo, BroadcastTensorsOfEveryDtypeFromRankZero) {
  if (!available()) GTEST_SKIP() << "built without c10d and Gloo (libgloo-dev)";
  std::vector<std::vector<torch::Tensor>> out(2);
  on_two_ranks([&](int rank, Group& g) {
    std::vector<torch::Tensor> t{torch::full({2, 2}, float(rank + 1)),
                                 torch::full({3}, int64_t(rank + 5)), torch::full({1}, rank + 0.5)};
    broadcast_tensors(t, 0, g);
    out[rank] = t;
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(torch::equal(out[r][0], torch::full({2, 2}, 1.0f)));
    EXPECT_TRUE(torch::equal(out[r][1], torch::full({3}, int64_t(5))));
    EXPECT_TRUE(torch::equal(out[r][2], torch::full({1}, 0.5, torch::kFloat64)));
  }
}

TEST(Gloo, ARankThatStopsEndsTheOtherWithANamedErrorWithinTheTimeout) {
  if (!available()) GTEST_SKIP() << "built without c10d and Gloo (libgloo-dev)";
  std::string message;
  const auto t0 = std::chrono::steady_clock::now();
  on_two_ranks(
      [&](int rank, Group& g) {
        if (rank == 1) return;  // this rank never joins the all-reduce
        auto x = torch::ones({4});
        message = fsa::testing::error_message<train::TrainingError>([&] { g.all_reduce_sum_(x); });
      },
      // The rendezvous waits as long: a loaded machine needs more than 1.5 s.
      std::chrono::seconds(5));
  const auto waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(message.find("rank 0 of 2: the all-reduce"), std::string::npos) << message;
  EXPECT_NE(message.find("dist.timeout"), std::string::npos) << message;
  EXPECT_LT(waited, 20.0);
}

TEST(Gloo, WithoutALauncherOrWithAnUnknownBackend) {
  EXPECT_EQ(world().size(), 1);
  EXPECT_TRUE(is_main());
  Launch l;
  l.world_size = 2;
  EXPECT_THROW(connect(l, "mpi", std::chrono::seconds(1)), io::ConfigError);
  if (available()) {
    EXPECT_THROW(connect(l, "nccl", std::chrono::seconds(1)), io::ConfigError);
  } else {
    EXPECT_THROW(connect(l, "gloo", std::chrono::seconds(1)), io::ConfigError);
  }
}

}  // namespace
}  // namespace fsa::dist
