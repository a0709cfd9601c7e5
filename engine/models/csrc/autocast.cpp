// CPU autocast for ardpipe. tch exposes only the CUDA autocast switch; libtorch's CPU autocast
// (bf16 matmuls, f32 reductions) needs the device-typed calls below. Exceptions never cross
// into Rust: each function reports failure through its return value.
#include <ATen/autocast_mode.h>

extern "C" {

// Enable or disable autocast for a device type (0 = CPU, 1 = CUDA) with a compute dtype given
// as a c10::ScalarType number. Returns the previous enabled state, or -1 on error.
int ardpipe_autocast_set(int device, int enabled, int dtype) {
  try {
    auto dev = device == 1 ? at::kCUDA : at::kCPU;
    int prev = at::autocast::is_autocast_enabled(dev) ? 1 : 0;
    if (enabled) {
      at::autocast::set_autocast_dtype(dev, static_cast<at::ScalarType>(dtype));
    }
    at::autocast::set_autocast_enabled(dev, enabled != 0);
    return prev;
  } catch (...) {
    return -1;
  }
}

int ardpipe_autocast_enabled(int device) {
  try {
    return at::autocast::is_autocast_enabled(device == 1 ? at::kCUDA : at::kCPU) ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

int ardpipe_autocast_enter() {
  try {
    return at::autocast::increment_nesting();
  } catch (...) {
    return -1;
  }
}

// Leaving the outermost autocast region drops its cache of cast weights.
int ardpipe_autocast_exit() {
  try {
    int n = at::autocast::decrement_nesting();
    if (n == 0) at::autocast::clear_cache();
    return n;
  } catch (...) {
    return -1;
  }
}

}
