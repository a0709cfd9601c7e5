// ardpipe's bridge to c10d, PyTorch's distributed runtime inside the same libtorch: a TCPStore
// rendezvous, a Gloo (CPU) or NCCL (CUDA) process group, and the three collectives the trainer
// needs. The C ABI below is what Rust calls. Exceptions never cross into Rust: every function
// reports failure through its return value and writes c10d's own message into `err`.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#ifdef ARDPIPE_WITH_NCCL
// Defined in nccl.cpp, compiled only against a CUDA libtorch whose NCCL headers were found.
c10::intrusive_ptr<c10d::Backend> ardpipe_make_nccl(
    const c10::intrusive_ptr<c10d::Store>& store,
    int rank,
    int world,
    int device,
    std::chrono::milliseconds timeout);
#endif

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
};

void set_error(char* err, size_t len, const std::string& message) {
  if (err == nullptr || len == 0) {
    return;
  }
  size_t n = std::min(message.size(), len - 1);
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

// c10d errors carry a C++ backtrace after the first line when TORCH_SHOW_CPP_STACKTRACES is
// set; the message is what the user needs.
std::string describe(const std::exception& e) {
  if (auto* c = dynamic_cast<const c10::Error*>(&e)) {
    return c->what_without_backtrace();
  }
  return e.what();
}

template <typename F>
int guarded(char* err, size_t len, F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    set_error(err, len, describe(e));
  } catch (...) {
    set_error(err, len, "unknown C++ exception in c10d");
  }
  return -1;
}

// Launch `op` on each tensor, then wait for all: the backend's worker threads work on several
// at once. Every launched collective is awaited even if one fails, so none is left running on
// a tensor the caller is about to free; then the first failure is reported.
template <typename Launch>
void launch_all(at::Tensor** tensors, size_t n, Launch&& op) {
  at::NoGradGuard no_grad;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (size_t i = 0; i < n; ++i) {
    std::vector<at::Tensor> one{*tensors[i]};
    works.push_back(op(one));
  }
  std::exception_ptr first;
  for (auto& w : works) {
    try {
      w->wait();
    } catch (...) {
      if (!first) {
        first = std::current_exception();
      }
    }
  }
  if (first) {
    std::rethrow_exception(first);
  }
}

} // namespace

extern "C" {

// Rendezvous through a TCPStore at host:port and create the process group. `store_server`:
// this process hosts the store (rank 0, unless a launcher's agent already does); `listen_fd`,
// when >= 0, is a socket the caller already bound and listens on, which the store takes over
// (so it listens where the caller chose, not on every interface). `gloo_host`, when not empty,
// is the address Gloo binds its own sockets to. `prefix` keeps ardpipe's keys apart from a
// launcher's own in a shared store. `device`: the CUDA device of this process (NCCL), ignored
// by Gloo. NULL on failure.
void* ardpipe_c10d_new(
    const char* backend,
    const char* host,
    int port,
    int rank,
    int world,
    int store_server,
    int listen_fd,
    const char* gloo_host,
    int device,
    const char* prefix,
    int64_t timeout_ms,
    char* err,
    size_t err_len) {
  Group* out = nullptr;
  guarded(err, err_len, [&] {
    std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = store_server != 0;
    opts.numWorkers = static_cast<std::size_t>(world);
    opts.waitWorkers = true;
    opts.timeout = timeout;
    if (listen_fd >= 0) {
      opts.masterListenFd = listen_fd;
    }
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    auto group = std::make_unique<Group>();
    group->store = store;
    std::string name(backend);
    if (name == "gloo") {
      // create_default picks the interface the way torch.distributed does (GLOO_SOCKET_IFNAME,
      // else this host's name, else loopback).
      auto gloo_opts = c10d::ProcessGroupGloo::Options::create_default(timeout);
      if (gloo_host != nullptr && *gloo_host != '\0') {
        gloo_opts->devices = {
            c10d::ProcessGroupGloo::createDeviceForHostname(std::string(gloo_host))};
      }
      group->backend =
          c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, gloo_opts);
    } else if (name == "nccl") {
#ifdef ARDPIPE_WITH_NCCL
      group->backend = ardpipe_make_nccl(store, rank, world, device, timeout);
#else
      (void)device;
      throw std::runtime_error(
          "this ardpipe was built without NCCL (it needs a CUDA libtorch and its NCCL "
          "headers at build time: scripts/setup.sh --gpu)");
#endif
    } else {
      throw std::runtime_error("unknown c10d backend `" + name + "`");
    }
    out = group.release();
  });
  return out;
}

void ardpipe_c10d_free(void* group) {
  try {
    delete static_cast<Group*>(group);
  } catch (...) {
  }
}

int ardpipe_c10d_barrier(void* group, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* g = static_cast<Group*>(group);
    g->backend->barrier(c10d::BarrierOptions())->wait();
  });
}

// Broadcast each tensor from `root` in place; all are launched before any is waited for.
int ardpipe_c10d_broadcast(
    void* group,
    at::Tensor** tensors,
    size_t n,
    int root,
    char* err,
    size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* g = static_cast<Group*>(group);
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    launch_all(tensors, n, [&](std::vector<at::Tensor>& one) {
      return g->backend->broadcast(one, opts);
    });
  });
}

// Sum each tensor over all ranks in place; all are launched before any is waited for, so the
// backend's worker threads reduce several buckets at once.
int ardpipe_c10d_all_reduce_sum(
    void* group,
    at::Tensor** tensors,
    size_t n,
    char* err,
    size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* g = static_cast<Group*>(group);
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    launch_all(tensors, n, [&](std::vector<at::Tensor>& one) {
      return g->backend->allreduce(one, opts);
    });
  });
}

} // extern "C"
