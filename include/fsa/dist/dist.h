// Data-parallel training on PyTorch's c10d: the process group that torchrun
// or SLURM starts fsa in, and the collectives the training loop needs
// (CONVENTIONS.md, "Launching"; issue 13).
//
// Every rank runs the same program on its shard of each batch; gradients are
// averaged over the ranks after each backward pass, so that the ranks keep
// identical weights and one step equals one step of a single process on the
// whole (global) batch. Without a launcher's environment fsa runs in one
// process and every function here is a no-op.
#pragma once

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace fsa::dist {

/// Where this process stands among the training processes, as its launcher
/// set it.
struct Launch {
  int rank = 0;                           ///< 0 .. world_size − 1
  int world_size = 1;                     ///< processes in the run
  int local_rank = 0;                     ///< rank on this machine (which GPU it takes)
  int local_world_size = 1;               ///< processes on this machine (they share its cores)
  std::string master_addr = "127.0.0.1";  ///< host of rank 0's TCPStore
  int master_port = 29500;
  std::string launcher;  ///< "torchrun", "slurm", or "" (one process)
  /// torchrun's agent already serves the TCPStore at MASTER_ADDR:MASTER_PORT
  /// (TORCHELASTIC_USE_AGENT_STORE=True): every rank connects as a client,
  /// under the prefix of its attempt (TORCHELASTIC_RESTART_COUNT), as
  /// PyTorch's env:// rendezvous does.
  bool agent_store = false;
  int restart_count = 0;
  bool distributed() const { return world_size > 1; }
};

/// The launch as the environment describes it: torchrun's RANK, WORLD_SIZE,
/// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT; where RANK is
/// not set, SLURM's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID and
/// SLURM_NTASKS_PER_NODE (its leading number), with MASTER_ADDR and
/// MASTER_PORT from the environment (127.0.0.1 and 29500 when unset); with
/// neither, one process. `get` reads a variable (std::getenv; tests pass
/// their own). Throws io::ConfigError naming the variable that is not an
/// integer or out of range (RANK ≥ WORLD_SIZE, a port outside 1..65535).
Launch launch_from_environment(const std::function<const char*(const char*)>& get =
                                   [](const char* name) { return std::getenv(name); });

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice
/// for port 0): a rendezvous for ranks on one machine (tests, benchmarks).
/// Throws std::runtime_error if no socket can be bound.
int free_loopback_port();

/// True when this fsa was built with c10d and Gloo (CMake found them).
bool available();

/// A process group: its rank, size and the collectives on CPU tensors
/// (CUDA tensors go through the same calls on a CUDA build's backend).
/// The single-process group's collectives return their input unchanged.
class Group {
 public:
  virtual ~Group() = default;
  virtual int rank() const { return 0; }
  virtual int size() const { return 1; }
  /// Ranks on this machine (Launch::local_world_size).
  virtual int local_size() const { return 1; }
  /// Sum over the ranks, in place, of a float or int64 tensor (contiguous).
  virtual void all_reduce_sum_(torch::Tensor& t) { (void)t; }
  /// The root's values, in place, on every rank.
  virtual void broadcast_(torch::Tensor& t, int root) { (void)t, (void)root; }
  /// Every rank's `t` (same shape on all), stacked along a new dimension 0:
  /// [size, ...]. One process: t.unsqueeze(0).
  virtual torch::Tensor all_gather(const torch::Tensor& t) { return t.unsqueeze(0); }
  /// Waits for every rank.
  virtual void barrier() {}
  /// "gloo", "nccl", or "none" for one process.
  virtual std::string backend() const { return "none"; }
};

/// Joins the process group of `launch`: rank 0 serves a TCPStore at
/// master_addr:master_port (or torchrun's agent does: Launch::agent_store),
/// the others connect to it, and every collective
/// waits at most `timeout` for the others (a rank that died or stalls makes
/// the others throw TrainingError within it, naming the collective).
/// `backend`: "gloo" (CPU tensors), "nccl" (CUDA; needs a CUDA LibTorch with
/// NCCL), or "auto" (gloo on CPU). Throws io::ConfigError when fsa was built
/// without c10d, for an unknown backend, or when the store cannot be reached
/// within the timeout (naming the address).
std::shared_ptr<Group> connect(const Launch& launch, const std::string& backend,
                               std::chrono::milliseconds timeout);

/// The process group of this run: the one set_world installed, else the
/// single-process group.
Group& world();

/// The group set_world installed, to hold beyond this call (nullptr in one
/// process).
std::shared_ptr<Group> world_shared();

/// Installs `group` as world() for the rest of the process (nullptr: one process again).
void set_world(std::shared_ptr<Group> group);

/// rank 0, the one that writes files (checkpoints, metrics, reports, logs).
inline bool is_main() { return world().rank() == 0; }

/// Makes the gradients of `params` the gradient of the global batch's mean
/// loss on every rank: each rank's gradient (of the mean loss over its
/// `local_items` images) is weighted by local_items / global_items and the
/// weighted gradients summed over the ranks, in flattened all-reduces of
/// buckets of about 25 MiB (DistributedDataParallel's size). Exact for shares of any size
/// (data::batch_share's uneven shares included). A no-op in one process.
void average_gradients(const std::vector<torch::Tensor>& params, int64_t local_items,
                       int64_t global_items, Group& group = world());

/// Rank `root`'s values of `tensors` (parameters, buffers) on every rank, in
/// place, through flattened broadcasts of buckets of about 25 MiB.
void broadcast_tensors(const std::vector<torch::Tensor>& tensors, int root = 0,
                       Group& group = world());

}  // namespace fsa::dist
