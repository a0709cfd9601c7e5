// libtorch operations tch's C API does not reach, for engine/adapters/src/ops.rs:
//
// - a linear over a weight-only quantised frozen weight (int8 per output channel, int4 per
//   group of input columns, asymmetric), as an autograd function: the forward pass dequantises the weight
//   for its product and drops it; the backward pass dequantises it again for the input gradient
//   dY·W. Autograd then saves the quantised weight (a reference, no copy) instead of a dense one,
//   and the gradient is exact for the dequantised weight.
// - gradient checkpointing: a function whose forward pass runs a Rust closure without recording
//   a graph, keeping only its input, and whose backward pass runs the closure again with a graph
//   and backpropagates through it (torch.utils.checkpoint's reentrant form);
// - PyTorch's fused AdamW over many tensors in one call (`_fused_adamw_`).
//
// Exceptions never cross into Rust: each entry point catches them, writes the message into the
// caller's buffer and returns nonzero. Tensors cross as tch's handles (`at::Tensor*`).
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/autograd.h>

#include <cstring>
#include <string>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

void write_error(char* err, size_t len, const char* what) {
  if (err == nullptr || len == 0) return;
  std::strncpy(err, what, len - 1);
  err[len - 1] = '\0';
}

template <typename F>
int guarded(char* err, size_t len, F&& f) {
  try {
    f();
    return 0;
  } catch (const c10::Error& e) {
    write_error(err, len, e.what_without_backtrace());
  } catch (const std::exception& e) {
    write_error(err, len, e.what());
  } catch (...) {
    write_error(err, len, "unknown C++ exception");
  }
  return 1;
}

// ---------------------------------------------------------------------------------------------
// Weight-only quantisation. int8: q [N, K] int8, scales [N] f32, W = q · scale (per row),
// symmetric: scale = max|w| / 127 over the row. int4: q [N, K/2] uint8 holding two 4-bit codes
// per byte (column 2j in the low nibble, 2j+1 in the high one), scales [N, K/group, 2] f16 holding
// each group's (step, minimum), W = c · step + minimum: asymmetric, the 16 codes spanning the
// group from its smallest to its largest weight. This is GGUF's Q4_1 (f16 step and minimum), so
// at groups of 32 it takes 5 bits a weight, and a Q4_0 or Q4_1 model keeps its own grid.

at::Tensor dequantize(const at::Tensor& q, const at::Tensor& scales, int64_t bits, int64_t group,
                      at::ScalarType dtype) {
  if (bits == 8) {
    return (q.to(at::kFloat) * scales.unsqueeze(1)).to(dtype);
  }
  const int64_t n = q.size(0);
  const int64_t k = q.size(1) * 2;
  auto lo = at::bitwise_and(q, 15);
  auto hi = at::bitwise_right_shift(q, 4);
  auto codes = at::stack({lo, hi}, -1).view({n, k / group, group}).to(at::kFloat);
  auto s32 = scales.to(at::kFloat);
  auto step = s32.select(2, 0).unsqueeze(-1);
  auto minimum = s32.select(2, 1).unsqueeze(-1);
  return at::addcmul(minimum, codes, step).view({n, k}).to(dtype);
}

// f16's largest finite value and smallest positive (subnormal) one.
constexpr double kHalfMax = 65504.0;
constexpr double kHalfTiny = 5.960464477539063e-08;

void quantize(const at::Tensor& w, int64_t bits, int64_t group, at::Tensor& q, at::Tensor& scales) {
  at::NoGradGuard no_grad;
  auto w32 = w.to(at::kFloat);
  if (bits == 8) {
    scales = (w32.abs().amax({1}) / 127.0).clamp_min(1e-12);
    q = (w32 / scales.unsqueeze(1)).round().clamp(-127, 127).to(at::kChar);
    return;
  }
  const int64_t n = w32.size(0);
  const int64_t k = w32.size(1);
  auto grouped = w32.view({n, k / group, group});
  auto largest = grouped.abs().max().item<double>();
  if (!(largest <= kHalfMax / 2)) {
    throw std::runtime_error("a weight of magnitude " + std::to_string(largest) +
                             " is beyond what int4's f16 step and minimum hold (32752)");
  }
  // Step and minimum are rounded to f16 first and the codes chosen against the rounded values,
  // so dequantising gives back the nearest grid point of the grid that is stored. A constant
  // group gets the smallest step: every code is 0 and the weight is its minimum.
  auto minimum = grouped.amin({2}).to(at::kHalf);
  auto step = ((grouped.amax({2}) - minimum.to(at::kFloat)) / 15.0).clamp_min(kHalfTiny).to(at::kHalf);
  auto codes = ((grouped - minimum.to(at::kFloat).unsqueeze(-1)) / step.to(at::kFloat).unsqueeze(-1))
                   .round()
                   .clamp(0, 15)
                   .to(at::kByte)
                   .view({n, k / 2, 2});
  auto lo = codes.select(2, 0);
  auto hi = codes.select(2, 1);
  q = at::bitwise_or(lo, at::bitwise_left_shift(hi, 4)).contiguous();
  scales = at::stack({step, minimum}, -1).contiguous();
}

// The dtype a linear computes in: autocast's when it is on for the input's device.
at::ScalarType compute_dtype(const at::Tensor& x) {
  auto dev = x.device().type();
  if (at::autocast::is_autocast_enabled(dev) && at::isFloatingType(x.scalar_type())) {
    return at::autocast::get_autocast_dtype(dev);
  }
  return x.scalar_type();
}

struct QuantLinear : public torch::autograd::Function<QuantLinear> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& q,
                            const at::Tensor& scales, int64_t bits, int64_t group) {
    auto dtype = compute_dtype(x);
    auto w = dequantize(q, scales, bits, group, dtype);
    // Operands already in `dtype`: autocast, if on, has nothing to cast.
    auto y = at::linear(x.to(dtype), w);
    ctx->save_for_backward({q, scales});
    ctx->saved_data["bits"] = bits;
    ctx->saved_data["group"] = group;
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& dy = grads[0];
    auto w = dequantize(saved[0], saved[1], ctx->saved_data["bits"].toInt(),
                        ctx->saved_data["group"].toInt(), dy.scalar_type());
    auto x_dtype = static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    auto dx = at::matmul(dy, w).to(x_dtype);
    return {dx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// ---------------------------------------------------------------------------------------------
// Checkpointing. The closure is Rust's: `run` computes its output for an input (returning 0, or
// nonzero with a message in `err`), `drop` frees it when the graph lets go of it.

typedef int (*run_fn)(void* closure, at::Tensor* input, at::Tensor** output, char* err,
                      size_t err_len);
typedef void (*drop_fn)(void* closure);

struct Closure : torch::CustomClassHolder {
  void* data;
  run_fn run;
  drop_fn drop;
  Closure(void* d, run_fn r, drop_fn f) : data(d), run(r), drop(f) {}
  ~Closure() override { drop(data); }

  at::Tensor call(const at::Tensor& x) const {
    char err[4096] = {0};
    at::Tensor* out = nullptr;
    if (run(data, new at::Tensor(x), &out, err, sizeof err) != 0 || out == nullptr) {
      throw std::runtime_error(std::string("checkpointed layer: ") + err);
    }
    at::Tensor y = *out;
    delete out;
    return y;
  }
};

// The forward pass records the random streams and autocast state it ran under, so the
// recomputation draws the same random numbers (dropout) and computes in the same precision.
struct Checkpoint : public torch::autograd::Function<Checkpoint> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            c10::intrusive_ptr<Closure> closure) {
    auto dev = x.device();
    ctx->saved_data["cpu_rng"] = at::detail::getDefaultCPUGenerator().get_state();
    if (dev.is_cuda()) {
      ctx->saved_data["cuda_rng"] = at::globalContext().defaultGenerator(dev).get_state();
    }
    bool ac = at::autocast::is_autocast_enabled(dev.type());
    ctx->saved_data["autocast"] = ac;
    ctx->saved_data["autocast_dtype"] =
        static_cast<int64_t>(at::autocast::get_autocast_dtype(dev.type()));
    ctx->saved_data["closure"] = c10::IValue::make_capsule(closure);
    ctx->save_for_backward({x});
    // Function::forward runs without grad: nothing of the layer is kept.
    return closure->call(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    auto dev = x.device();
    auto closure = ctx->saved_data["closure"].toCapsule();
    auto* c = static_cast<Closure*>(closure.get());

    // Fork the random streams: replay the forward pass's, then restore the current ones.
    at::Generator cpu_gen = at::detail::getDefaultCPUGenerator();
    auto cpu_now = cpu_gen.get_state();
    cpu_gen.set_state(ctx->saved_data["cpu_rng"].toTensor());
    at::Tensor cuda_now;
    if (dev.is_cuda()) {
      at::Generator g = at::globalContext().defaultGenerator(dev);
      cuda_now = g.get_state();
      g.set_state(ctx->saved_data["cuda_rng"].toTensor());
    }
    at::Tensor y;
    {
      at::AutoGradMode grad(true);
      bool ac = ctx->saved_data["autocast"].toBool();
      auto type = dev.type();
      bool ac_prev = at::autocast::is_autocast_enabled(type);
      auto dt_prev = at::autocast::get_autocast_dtype(type);
      at::autocast::set_autocast_dtype(
          type, static_cast<at::ScalarType>(ctx->saved_data["autocast_dtype"].toInt()));
      at::autocast::set_autocast_enabled(type, ac);
      if (ac) at::autocast::increment_nesting();
      try {
        y = c->call(x);
      } catch (...) {
        if (ac && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        at::autocast::set_autocast_enabled(type, ac_prev);
        at::autocast::set_autocast_dtype(type, dt_prev);
        throw;
      }
      if (ac && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
      at::autocast::set_autocast_enabled(type, ac_prev);
      at::autocast::set_autocast_dtype(type, dt_prev);
    }
    cpu_gen.set_state(cpu_now);
    if (dev.is_cuda()) {
      at::Generator g = at::globalContext().defaultGenerator(dev);
      g.set_state(cuda_now);
    }
    // Backpropagate through the recomputed layer: its parameters' .grad accumulate here.
    torch::autograd::backward({y}, {grads[0]});
    return {x.grad(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

int ardpipe_quantize(at::Tensor* w, int64_t bits, int64_t group, at::Tensor** q_out,
                     at::Tensor** scales_out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    at::Tensor q, scales;
    quantize(*w, bits, group, q, scales);
    *q_out = new at::Tensor(q);
    *scales_out = new at::Tensor(scales);
  });
}

int ardpipe_dequantize(at::Tensor* q, at::Tensor* scales, int64_t bits, int64_t group,
                       int dtype, at::Tensor** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    at::NoGradGuard no_grad;
    *out = new at::Tensor(
        dequantize(*q, *scales, bits, group, static_cast<at::ScalarType>(dtype)));
  });
}

// `bias` may be null.
int ardpipe_quant_linear(at::Tensor* x, at::Tensor* q, at::Tensor* scales, at::Tensor* bias,
                         int64_t bits, int64_t group, at::Tensor** out, char* err,
                         size_t err_len) {
  return guarded(err, err_len, [&] {
    // The bias is added outside the function: an autograd function takes no undefined tensor.
    auto y = QuantLinear::apply(*x, *q, *scales, bits, group);
    if (bias) y = y + bias->to(y.scalar_type());
    *out = new at::Tensor(y);
  });
}

// `closure` is this function's from the call on: the graph frees it (through `drop`) when it lets
// go of it, or at once when there is no graph (grad mode off) or the call fails.
int ardpipe_checkpoint(at::Tensor* x, void* closure, run_fn run, drop_fn drop, at::Tensor** out,
                       char* err, size_t err_len) {
  c10::intrusive_ptr<Closure> c;
  return guarded(err, err_len, [&] {
    c = c10::make_intrusive<Closure>(closure, run, drop);
    if (!at::GradMode::is_enabled()) {
      *out = new at::Tensor(c->call(*x));
      return;
    }
    auto input = *x;
    // An input without grad (the embeddings of a frozen table) would leave the output without
    // a grad_fn, and the layer's adapters without gradients.
    if (!input.requires_grad()) input = input.detach().requires_grad_(true);
    *out = new at::Tensor(Checkpoint::apply(input, c));
  });
}

// One AdamW step (PyTorch's, decoupled weight decay) over `n` tensors with one learning rate and
// weight decay; `steps` are f32 scalars on the parameters' device, incremented here.
int ardpipe_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs,
                        at::Tensor** exp_avg_sqs, at::Tensor** steps, size_t n, double lr,
                        double beta1, double beta2, double weight_decay, double eps, char* err,
                        size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> p, g, m, v, s;
    for (size_t i = 0; i < n; ++i) {
      p.push_back(*params[i]);
      g.push_back(*grads[i]);
      m.push_back(*exp_avgs[i]);
      v.push_back(*exp_avg_sqs[i]);
      s.push_back(*steps[i]);
    }
    at::NoGradGuard no_grad;
    // The kernel reads the step count; counting is the caller's (torch.optim's `_fused_adamw`).
    at::_foreach_add_(s, 1);
    at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps, false, false,
                      std::nullopt, std::nullopt);
  });
}

}
