// libtorch's operator profiler (Kineto, the one behind `torch.profiler`) for
// engine/adapters/src/profile.rs: record every aten operator a stretch of code runs, then write
// the events as a Chrome trace. The model benchmark profiles its timed steps with it, and the
// Python peer's with `torch.profiler`, so both sides' time per operator is counted by the same
// code (scripts/bench_models.py).
#include <torch/csrc/autograd/profiler_kineto.h>

#include <cstring>
#include <set>
#include <string>

namespace {

int fail(char* err, size_t len, const char* what) {
  if (err != nullptr && len > 0) {
    std::strncpy(err, what, len - 1);
    err[len - 1] = '\0';
  }
  return 1;
}

}  // namespace

extern "C" {

int ardpipe_profile_start(char* err, size_t err_len) {
  try {
    using namespace torch::profiler::impl;
    ProfilerConfig config(ProfilerState::KINETO);
    std::set<ActivityType> activities{ActivityType::CPU};
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
    return 0;
  } catch (const std::exception& e) {
    return fail(err, err_len, e.what());
  }
}

// `path` null: stop and discard the events.
int ardpipe_profile_stop(const char* path, char* err, size_t err_len) {
  try {
    auto result = torch::autograd::profiler::disableProfiler();
    if (path != nullptr) result->save(path);
    return 0;
  } catch (const std::exception& e) {
    return fail(err, err_len, e.what());
  }
}

}
