#include "fsa/dist/dist.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <map>

#include "fsa/io/config.h"
#include "fsa/train/phases.h"

#ifdef FSA_WITH_DIST
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace fsa::dist {
namespace {

/// The integer in environment variable `name`, or nullopt when unset.
std::optional<int64_t> integer_variable(const std::function<const char*(const char*)>& get,
                                        const char* name, int64_t lo, int64_t hi) {
  const char* text = get(name);
  if (text == nullptr) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
    throw io::ConfigError(
        fmt::format("environment variable {}='{}': expected an integer in "
                    "{}..{}",
                    name, text, lo, hi));
  }
  return v;
}

/// The first line of a LibTorch or Gloo message, without its C++ backtrace.
std::string first_line(const std::exception& e) {
  std::string m = e.what();
  return m.substr(0, m.find('\n'));
}

std::shared_ptr<Group>& installed() {
  static std::shared_ptr<Group> group;
  return group;
}

#ifdef FSA_WITH_DIST
/// A c10d process group; every collective waits at most the timeout.
class C10dGroup : public Group {
 public:
  C10dGroup(c10::intrusive_ptr<c10d::ProcessGroup> pg, std::string backend,
            std::chrono::milliseconds timeout, int local_size)
      : pg_(std::move(pg)),
        backend_(std::move(backend)),
        timeout_(timeout),
        local_size_(local_size) {}

  int rank() const override { return pg_->getRank(); }
  int size() const override { return pg_->getSize(); }
  int local_size() const override { return local_size_; }
  std::string backend() const override { return backend_; }

  void all_reduce_sum_(torch::Tensor& t) override {
    std::vector<torch::Tensor> v{t};
    wait(pg_->allreduce(v), "all-reduce");
  }
  void broadcast_(torch::Tensor& t, int root) override {
    std::vector<torch::Tensor> v{t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    wait(pg_->broadcast(v, o), "broadcast");
  }
  torch::Tensor all_gather(const torch::Tensor& t) override {
    std::vector<torch::Tensor> in{t.contiguous()};
    std::vector<std::vector<torch::Tensor>> out(1);
    for (int r = 0; r < size(); ++r) out[0].push_back(torch::empty_like(in[0]));
    wait(pg_->allgather(out, in), "all-gather");
    return torch::stack(out[0]);
  }
  void barrier() override { wait(pg_->barrier(), "barrier"); }

 private:
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
    try {
      work->wait(timeout_);
    } catch (const std::exception& e) {
      throw train::TrainingError(fmt::format(
          "rank {} of {}: the {} over the {} process group failed or waited longer than "
          "dist.timeout ({} s): another rank has stopped or stalls (its output says why): {}",
          rank(), size(), what, backend_, timeout_.count() / 1000.0, first_line(e)));
    }
  }

  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
  std::string backend_;
  std::chrono::milliseconds timeout_;
  int local_size_;
};
#endif

/// Buckets of `tensors` for flattened collectives: one dtype each, in
/// first-seen order, each closed once it holds kBucketBytes (a single larger
/// tensor is a bucket of its own). DistributedDataParallel's 25 MiB: Gloo
/// over TCP moves buckets of this size far faster than one buffer of
/// hundreds of MB (docs/SCALING.md).
constexpr int64_t kBucketBytes = 25 << 20;
std::vector<std::vector<torch::Tensor>> buckets(const std::vector<torch::Tensor>& tensors) {
  std::vector<std::vector<torch::Tensor>> out;
  std::map<c10::ScalarType, std::pair<size_t, int64_t>> open;  // dtype → (bucket, bytes)
  for (const auto& t : tensors) {
    if (!t.defined()) continue;
    auto it = open.find(t.scalar_type());
    if (it == open.end() || it->second.second >= kBucketBytes) {
      it = open.insert_or_assign(t.scalar_type(), std::pair{out.size(), int64_t{0}}).first;
      out.emplace_back();
    }
    out[it->second.first].push_back(t);
    it->second.second += t.numel() * static_cast<int64_t>(t.element_size());
  }
  return out;
}

/// One flat tensor of `tensors` (same dtype and device), and back.
torch::Tensor flatten(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.detach().reshape({-1}));
  return torch::cat(flat);
}

void unflatten_into(const torch::Tensor& flat, const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  int64_t at = 0;
  for (const auto& t : tensors) {
    t.copy_(flat.narrow(0, at, t.numel()).view_as(t));
    at += t.numel();
  }
}

}  // namespace

Launch launch_from_environment(const std::function<const char*(const char*)>& get) {
  Launch l;
  constexpr int64_t kMaxRanks = 1 << 20;
  if (get("RANK") != nullptr || get("WORLD_SIZE") != nullptr) {
    l.launcher = "torchrun";
    const auto world = integer_variable(get, "WORLD_SIZE", 1, kMaxRanks);
    const auto rank = integer_variable(get, "RANK", 0, kMaxRanks - 1);
    if (!world || !rank) {
      throw io::ConfigError(fmt::format("environment: {} is set but {} is not; torchrun sets both",
                                        world ? "WORLD_SIZE" : "RANK",
                                        world ? "RANK" : "WORLD_SIZE"));
    }
    l.world_size = static_cast<int>(*world);
    l.rank = static_cast<int>(*rank);
    l.local_rank =
        static_cast<int>(integer_variable(get, "LOCAL_RANK", 0, kMaxRanks - 1).value_or(0));
    l.local_world_size = static_cast<int>(
        integer_variable(get, "LOCAL_WORLD_SIZE", 1, kMaxRanks).value_or(l.world_size));
    if (l.rank >= l.world_size) {
      throw io::ConfigError(
          fmt::format("environment: RANK={} is not below WORLD_SIZE={}", l.rank, l.world_size));
    }
    if (const char* agent = get("TORCHELASTIC_USE_AGENT_STORE"); agent != nullptr) {
      l.agent_store = std::string(agent) == "True" || std::string(agent) == "1";
    }
    l.restart_count = static_cast<int>(
        integer_variable(get, "TORCHELASTIC_RESTART_COUNT", 0, 1 << 30).value_or(0));
  } else if (get("SLURM_PROCID") != nullptr) {
    l.launcher = "slurm";
    l.world_size =
        static_cast<int>(integer_variable(get, "SLURM_NTASKS", 1, kMaxRanks).value_or(1));
    l.rank = static_cast<int>(*integer_variable(get, "SLURM_PROCID", 0, kMaxRanks - 1));
    l.local_rank =
        static_cast<int>(integer_variable(get, "SLURM_LOCALID", 0, kMaxRanks - 1).value_or(0));
    // SLURM_NTASKS_PER_NODE may read "4" or "4(x2)": its leading number.
    if (const char* per_node = get("SLURM_NTASKS_PER_NODE"); per_node != nullptr) {
      const std::string text(per_node);
      const auto digits = text.substr(0, text.find_first_not_of("0123456789"));
      const std::string kept = digits;
      l.local_world_size =
          static_cast<int>(integer_variable([&](const char*) { return kept.c_str(); },
                                            "SLURM_NTASKS_PER_NODE", 1, kMaxRanks)
                               .value_or(1));
    } else {
      l.local_world_size = l.world_size;
    }
    if (l.rank >= l.world_size) {
      throw io::ConfigError(
          fmt::format("environment: SLURM_PROCID={} is not below "
                      "SLURM_NTASKS={}",
                      l.rank, l.world_size));
    }
  } else {
    return l;
  }
  if (const char* addr = get("MASTER_ADDR"); addr != nullptr) {
    if (*addr == '\0') throw io::ConfigError("environment variable MASTER_ADDR is empty");
    l.master_addr = addr;
  }
  l.master_port =
      static_cast<int>(integer_variable(get, "MASTER_PORT", 1, 65535).value_or(l.master_port));
  return l;
}

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("free_loopback_port: no socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("free_loopback_port: cannot bind 127.0.0.1");
  return ntohs(a.sin_port);
}

bool available() {
#ifdef FSA_WITH_DIST
  return true;
#else
  return false;
#endif
}

std::shared_ptr<Group> connect(const Launch& launch, const std::string& backend,
                               std::chrono::milliseconds timeout) {
  if (backend != "auto" && backend != "gloo" && backend != "nccl") {
    throw io::ConfigError(fmt::format("dist.backend '{}': expected auto, gloo or nccl", backend));
  }
#ifndef FSA_WITH_DIST
  (void)timeout;
  throw io::ConfigError(fmt::format(
      "{} started {} processes, but this fsa was built without c10d (CMake did not find "
      "LibTorch's c10d headers or Gloo's, libgloo-dev): it can run in one process only",
      launch.launcher, launch.world_size));
#else
  if (backend == "nccl") {
    throw io::ConfigError("dist.backend nccl: this LibTorch has no NCCL (a CPU build); use gloo");
  }
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(launch.master_port);
  so.isServer = launch.rank == 0 && !launch.agent_store;
  so.numWorkers = launch.world_size;
  so.waitWorkers = true;
  so.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, so);
    if (launch.agent_store) {
      store = c10::make_intrusive<c10d::PrefixStore>(
          fmt::format("/worker/attempt_{}", launch.restart_count), store);
    }
  } catch (const std::exception& e) {
    throw io::ConfigError(fmt::format(
        "rank {} of {}: the rendezvous at {}:{} (MASTER_ADDR:MASTER_PORT) did not complete "
        "within dist.timeout ({} s): {}",
        launch.rank, launch.world_size, launch.master_addr, launch.master_port,
        timeout.count() / 1000.0, first_line(e)));
  }
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(
      launch.master_addr == "localhost" ? "127.0.0.1" : launch.master_addr));
  options->threads = 2;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  try {
    pg =
        c10::make_intrusive<c10d::ProcessGroupGloo>(store, launch.rank, launch.world_size, options);
  } catch (const std::exception& e) {
    throw io::ConfigError(fmt::format(
        "rank {} of {}: the Gloo process group of the rendezvous at {}:{} could not form within "
        "dist.timeout ({} s): not every rank of WORLD_SIZE {} joined ({})",
        launch.rank, launch.world_size, launch.master_addr, launch.master_port,
        timeout.count() / 1000.0, launch.world_size, first_line(e)));
  }
  return std::make_shared<C10dGroup>(std::move(pg), "gloo", timeout, launch.local_world_size);
#endif
}

Group& world() {
  static Group single;
  auto& g = installed();
  return g ? *g : single;
}

std::shared_ptr<Group> world_shared() { return installed(); }

void set_world(std::shared_ptr<Group> group) { installed() = std::move(group); }

void average_gradients(const std::vector<torch::Tensor>& params, int64_t local_items,
                       int64_t global_items, Group& group) {
  if (group.size() == 1) return;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  const double weight = static_cast<double>(local_items) / static_cast<double>(global_items);
  for (const auto& same : buckets(grads)) {
    auto flat = flatten(same).mul_(weight);
    group.all_reduce_sum_(flat);
    unflatten_into(flat, same);
  }
}

void broadcast_tensors(const std::vector<torch::Tensor>& tensors, int root, Group& group) {
  if (group.size() == 1) return;
  for (const auto& same : buckets(tensors)) {
    auto flat = flatten(same).contiguous();
    group.broadcast_(flat, root);
    unflatten_into(flat, same);
  }
}

}  // namespace fsa::dist
