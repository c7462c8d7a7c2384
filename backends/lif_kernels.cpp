// Fused CPU kernels of spikebench's LIF engine (spikebench.backends.custom).
//
// Compiled lazily by spikebench/backends/_lif_kernels.py (torch.utils.cpp_extension.load) and
// registered as the operators torch.ops.spikebench_lif.forward_ / backward_ (the event-driven
// products of the same library are in event_kernels.cpp).
//
// Both kernels replace step-by-step loops of small ATen ops with one pass over the [T, M]
// tensors (M = B·N neurons, row-major so that row t holds step t): the neurons are split into
// contiguous blocks, each block runs the whole time loop with the neuron loop innermost (contiguous
// and vectorisable), and blocks run in parallel with at::parallel_for (torch.get_num_threads()).
//
// Numerics replicate the ATen ops of the TorchScript reference path bit for bit: ATen's CPU
// kernels evaluate `add_(x, alpha=a)` as fma(a, x, self) and `addcmul_(t1, t2, value=v)` as
// fma(v·t1, t2, self) (vectorised and scalar-tail loops alike), Python scalars are rounded to the
// tensor's dtype first, and everything else is one rounding per ATen op. This file is compiled
// with -ffp-contract=off so that only the explicit std::fma calls fuse.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/sub.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include "lif_kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace {

// Bytes of one row segment of a neuron block. The three or four row segments a time step touches
// stay in L2 until the next step reads them, and each is a long sequential stream for the
// prefetchers: measured inside the train step (cold, just-allocated memory) 32 KiB blocks were
// ~20 % faster than 2 KiB ones, which win only when everything is already in cache.
constexpr int64_t kBlockBytes = 32768;
template <typename scalar_t>
constexpr int64_t kBlock = kBlockBytes / sizeof(scalar_t);
// ATen's grain size (elements of work per thread; a neuron costs T elements), at least a few
// cache lines of neurons per thread.
constexpr int64_t kGrainElements = 32768;
constexpr int64_t kMinGrainNeurons = 256;

inline int64_t grain_neurons(int64_t T) {
  return std::max<int64_t>(kMinGrainNeurons, kGrainElements / std::max<int64_t>(T, 1));
}
// Python's math.pi (M_PI is not ISO C++).
constexpr double kPi = 3.141592653589793;

enum Reset : int { kSubtract = 0, kZero = 1, kNone = 2 };
enum Surrogate : int { kFastSigmoid = 0, kArctan = 1, kSigmoid = 2 };

// The constants of the recurrence, rounded to the tensor dtype the way ATen rounds Python scalars.
template <typename scalar_t>
struct Params {
  scalar_t beta;       // β
  scalar_t threshold;  // θ
  scalar_t reset_c;    // -β·θ (rounded from the double product, as `alpha=-beta*threshold`)
  scalar_t k1;         // fast_sigmoid: k; arctan: π/2·k; sigmoid: k
  scalar_t k2;         // arctan: k/2
};

// Integer type of a lane-wise spike count: as wide as scalar_t so that the count vectorises.
template <typename scalar_t>
using count_t = std::conditional_t<sizeof(scalar_t) == 4, int32_t, int64_t>;

// S[0] = [H[0] > θ] over n neurons (H[0] = I[0]); returns the number of spikes. With a bias
// (has_bias), cur holds the product x Wᵀ on entry and I[0] = cur + b is written back first (one
// rounding, what addmm's C = x Wᵀ + b gives for narrow inputs).
template <typename scalar_t, bool has_bias>
inline int64_t first_row(scalar_t* __restrict cur, const scalar_t* __restrict bias,
                         scalar_t* __restrict spk, int64_t n, const Params<scalar_t> p) {
  const scalar_t one = 1, zero = 0;
  count_t<scalar_t> count = 0;
  for (int64_t j = 0; j < n; ++j) {
    scalar_t h = cur[j];
    if constexpr (has_bias) {
      h = h + bias[j];
      cur[j] = h;
    }
    const bool s = h > p.threshold;
    spk[j] = s ? one : zero;
    count += s;
  }
  return count;
}

// One time step of the forward recurrence over n <= kBlock neurons (the lane count cannot
// overflow): cur holds I[t] on entry (with has_bias: x Wᵀ, and I[t] = cur + b), H[t] on exit;
// spk gets S[t]; returns the number of spikes.
//   subtract: H[t] = fma(-βθ, S[t-1], fma(β, H[t-1], I[t]))   (add_(h, alpha=β).add_(s, alpha=-βθ))
//   zero:     H[t] = fma(β·H[t-1], [H[t-1] <= θ], I[t])         (addcmul_(h, keep, value=β))
//   none:     H[t] = fma(β, H[t-1], I[t])                       (add_(h, alpha=β))
template <typename scalar_t, int reset, bool has_bias>
inline int64_t forward_row(const scalar_t* __restrict prev, scalar_t* __restrict cur,
                           const scalar_t* __restrict bias, scalar_t* __restrict spk, int64_t n,
                           const Params<scalar_t> p) {
  const scalar_t one = 1, zero = 0;
  count_t<scalar_t> count = 0;
  for (int64_t j = 0; j < n; ++j) {
    const scalar_t hp = prev[j];
    scalar_t i = cur[j];
    if constexpr (has_bias) i = i + bias[j];
    scalar_t h;
    if constexpr (reset == kSubtract) {
      h = std::fma(p.beta, hp, i);
      h = std::fma(p.reset_c, hp > p.threshold ? one : zero, h);
    } else if constexpr (reset == kZero) {
      h = std::fma(p.beta * hp, hp <= p.threshold ? one : zero, i);
    } else {
      h = std::fma(p.beta, hp, i);
    }
    cur[j] = h;
    const bool s = h > p.threshold;
    spk[j] = s ? one : zero;
    count += s;
  }
  return count;
}

// The recurrence over [T, M] in place; returns the total number of spikes. `tiled` (has_bias):
// the bias of the N neurons per sample repeated to N + kBlock entries, so that the bias of any
// block of neurons m0 .. m0 + n (n <= kBlock) is the contiguous run at tiled + m0 % N.
template <typename scalar_t, int reset, bool has_bias>
int64_t forward_impl(scalar_t* charge, scalar_t* spikes, const scalar_t* tiled, int64_t N,
                     int64_t T, int64_t M, const Params<scalar_t> p) {
  const int64_t grain = grain_neurons(T);
  std::atomic<int64_t> total{0};
  at::parallel_for(0, M, grain, [&](int64_t begin, int64_t end) {
    int64_t count = 0;
    for (int64_t m0 = begin; m0 < end; m0 += kBlock<scalar_t>) {
      const int64_t n = std::min(kBlock<scalar_t>, end - m0);
      const scalar_t* b = has_bias ? tiled + m0 % N : nullptr;
      count += first_row<scalar_t, has_bias>(charge + m0, b, spikes + m0, n, p);
      for (int64_t t = 1; t < T; ++t) {
        count += forward_row<scalar_t, reset, has_bias>(
            charge + (t - 1) * M + m0, charge + t * M + m0, b, spikes + t * M + m0, n, p);
      }
    }
    total += count;
  });
  return total.load();
}

template <typename scalar_t, bool has_bias>
int64_t forward_dispatch(scalar_t* c, scalar_t* s, const scalar_t* tiled, int64_t N, int64_t T,
                         int64_t M, int64_t reset, const Params<scalar_t> p) {
  if (reset == kSubtract) {
    return forward_impl<scalar_t, kSubtract, has_bias>(c, s, tiled, N, T, M, p);
  }
  if (reset == kZero) return forward_impl<scalar_t, kZero, has_bias>(c, s, tiled, N, T, M, p);
  return forward_impl<scalar_t, kNone, has_bias>(c, s, tiled, N, T, M, p);
}

// σ'(H - θ) of the surrogate, with ATen's op order (custom._surrogate_derivative_):
//   fast_sigmoid  reciprocal(square(|z|·k + 1))
//   arctan        reciprocal(square(z·(π/2·k)) + 1) · (k/2)
//   sigmoid       (s·(1 - s))·k with s = sigmoid(z·k) precomputed by ATen in the output buffer
template <typename scalar_t, int surrogate>
inline scalar_t surrogate_grad(scalar_t h, scalar_t s, const Params<scalar_t> p) {
  const scalar_t one = 1;
  if constexpr (surrogate == kFastSigmoid) {
    scalar_t a = std::abs(h - p.threshold) * p.k1;
    a = a + one;
    a = a * a;
    return one / a;
  } else if constexpr (surrogate == kArctan) {
    scalar_t a = (h - p.threshold) * p.k1;
    a = a * a;
    a = a + one;
    a = one / a;
    return a * p.k2;
  } else {
    return (s * (one - s)) * p.k1;
  }
}

// One time step of the backward pass over n neurons (t < T-1 when next != nullptr):
//   g = gS·σ' + gH   (or gS·σ' / gH alone);   g += D[t]·next (fma, as addcmul_ / add_(alpha=β))
//   D[t] = σ'·(-βθ) + β  |  fma(-H, σ', [H <= θ])·β  |  β        (subtract | zero | none)
// out holds the precomputed sigmoid on entry for the sigmoid surrogate; gs/gh may be null.
template <typename scalar_t, int reset, int surrogate, bool has_gs, bool has_gh>
inline void backward_row(const scalar_t* __restrict h, const scalar_t* __restrict gs,
                         const scalar_t* __restrict gh, const scalar_t* __restrict next,
                         scalar_t* __restrict out, int64_t n, const Params<scalar_t> p) {
  constexpr bool need_sg = has_gs || reset != kNone;
  const scalar_t one = 1, zero = 0;
  for (int64_t j = 0; j < n; ++j) {
    const scalar_t hj = h[j];
    scalar_t sg = 0;
    if constexpr (need_sg) {
      sg = surrogate_grad<scalar_t, surrogate>(hj, surrogate == kSigmoid ? out[j] : zero, p);
    }
    scalar_t g;
    if constexpr (has_gs && has_gh) {
      g = sg * gs[j] + gh[j];
    } else if constexpr (has_gs) {
      g = sg * gs[j];
    } else {
      g = gh[j];
    }
    if (next != nullptr) {
      scalar_t d;
      if constexpr (reset == kSubtract) {
        d = sg * p.reset_c + p.beta;
      } else if constexpr (reset == kZero) {
        d = std::fma(-hj, sg, hj <= p.threshold ? one : zero) * p.beta;
      } else {
        d = p.beta;
      }
      g = std::fma(d, next[j], g);
    }
    out[j] = g;
  }
}

// A [T, M] gradient operand: data and the distance between its time rows (0: the same [M] row
// for every step, as autograd passes the gradient of `spikes.sum(0)`).
template <typename scalar_t>
struct Operand {
  const scalar_t* data;
  int64_t t_stride;
  const scalar_t* row(int64_t t, int64_t m0) const { return data + t * t_stride + m0; }
};

template <typename scalar_t, int reset, int surrogate, bool has_gs, bool has_gh>
void backward_impl(const scalar_t* charge, Operand<scalar_t> gs, Operand<scalar_t> gh,
                   scalar_t* out, int64_t T, int64_t M, const Params<scalar_t> p) {
  const int64_t grain = grain_neurons(T);
  at::parallel_for(0, M, grain, [&](int64_t begin, int64_t end) {
    for (int64_t m0 = begin; m0 < end; m0 += kBlock<scalar_t>) {
      const int64_t n = std::min(kBlock<scalar_t>, end - m0);
      for (int64_t t = T - 1; t >= 0; --t) {
        const scalar_t* next = t + 1 < T ? out + (t + 1) * M + m0 : nullptr;
        backward_row<scalar_t, reset, surrogate, has_gs, has_gh>(
            charge + t * M + m0, has_gs ? gs.row(t, m0) : nullptr,
            has_gh ? gh.row(t, m0) : nullptr, next, out + t * M + m0, n, p);
      }
    }
  });
}

template <typename scalar_t>
Params<scalar_t> make_params(double beta, double threshold, double slope, int64_t surrogate) {
  Params<scalar_t> p;
  p.beta = static_cast<scalar_t>(beta);
  p.threshold = static_cast<scalar_t>(threshold);
  p.reset_c = static_cast<scalar_t>(-beta * threshold);
  p.k1 = static_cast<scalar_t>(surrogate == kArctan ? kPi / 2 * slope : slope);
  p.k2 = static_cast<scalar_t>(slope / 2);
  return p;
}

void check_state(const at::Tensor& t, const at::Tensor& charge, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == charge.scalar_type(), name, " must have charge's dtype");
  TORCH_CHECK(t.sizes() == charge.sizes(), name, " must have charge's shape");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// M, the number of neurons per step, of a [T, ...] tensor.
int64_t neurons(const at::Tensor& charge) {
  TORCH_CHECK(charge.dim() >= 1, "charge must be [T, ...]");
  const int64_t T = charge.size(0);
  return T == 0 ? 0 : charge.numel() / T;
}

}  // namespace

namespace spikebench_lif {

// The LIF recurrence in place over charge ([T, ..., N], I on entry, H on exit; with a bias [N],
// charge holds x Wᵀ and the bias is added on the way), spikes written into `spikes`; returns the
// exact number of spikes.
int64_t lif_forward(at::Tensor& charge, at::Tensor& spikes, const c10::optional<at::Tensor>& bias,
                    double beta, double threshold, int64_t reset) {
  TORCH_CHECK(charge.device().is_cpu() && charge.is_contiguous(),
              "charge must be a contiguous CPU tensor");
  check_state(spikes, charge, "spikes");
  TORCH_CHECK(reset >= 0 && reset <= 2, "reset must be 0, 1 or 2");
  const int64_t M = neurons(charge), T = charge.size(0);
  const bool has_bias = bias.has_value() && bias->defined();
  int64_t N = 1;
  if (has_bias) {
    const at::Tensor& b = *bias;
    N = b.numel();
    TORCH_CHECK(b.dim() == 1 && b.device().is_cpu() && b.scalar_type() == charge.scalar_type() &&
                    charge.dim() >= 2 && charge.size(-1) == N,
                "bias must be a 1-d CPU tensor of charge's dtype and last dimension");
  }
  int64_t count = 0;
  if (T > 0 && M > 0) {
    AT_DISPATCH_FLOATING_TYPES(charge.scalar_type(), "spikebench_lif_forward", [&] {
      const auto p = make_params<scalar_t>(beta, threshold, 0.0, kFastSigmoid);
      scalar_t* c = charge.data_ptr<scalar_t>();
      scalar_t* s = spikes.data_ptr<scalar_t>();
      if (has_bias) {
        const at::Tensor b = bias->contiguous();
        const scalar_t* bp = b.data_ptr<scalar_t>();
        std::vector<scalar_t> tiled(N + kBlock<scalar_t>);
        for (int64_t i = 0; i < N + kBlock<scalar_t>; ++i) tiled[i] = bp[i % N];
        count = forward_dispatch<scalar_t, true>(c, s, tiled.data(), N, T, M, reset, p);
      } else {
        count = forward_dispatch<scalar_t, false>(c, s, nullptr, N, T, M, reset, p);
      }
    });
  }
  return count;
}

namespace {

// forward_(charge, spikes, bias, beta, threshold, reset) -> count: lif_forward, the number of
// spikes as a 0-d tensor of charge's dtype (exact; ATen's `spikes.sum()` is too below 2^24).
at::Tensor forward_(at::Tensor charge, at::Tensor spikes, const c10::optional<at::Tensor>& bias,
                    double beta, double threshold, int64_t reset) {
  const int64_t count = lif_forward(charge, spikes, bias, beta, threshold, reset);
  return at::scalar_tensor(static_cast<double>(count), charge.options());
}

}  // namespace

// A gradient operand as [T, M] data with a time stride; `keep` holds a contiguous copy if needed.
template <typename scalar_t>
Operand<scalar_t> operand(const c10::optional<at::Tensor>& g, const at::Tensor& charge,
                          int64_t M, at::Tensor& keep) {
  if (!g.has_value()) return {nullptr, 0};
  const at::Tensor& t = *g;
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == charge.scalar_type() &&
                  t.sizes() == charge.sizes(),
              "gradients must be CPU tensors with charge's dtype and shape");
  if (t.is_contiguous()) return {t.data_ptr<scalar_t>(), M};
  if (t.dim() >= 1 && t.stride(0) == 0 && t.select(0, 0).is_contiguous()) {
    return {t.data_ptr<scalar_t>(), 0};  // an expand over time: read the one row every step
  }
  keep = t.contiguous();
  return {keep.data_ptr<scalar_t>(), M};
}

template <typename scalar_t, int reset, int surrogate>
void backward_dispatch_grads(const scalar_t* c, Operand<scalar_t> gs, Operand<scalar_t> gh,
                             scalar_t* o, int64_t T, int64_t M, const Params<scalar_t> p) {
  if (gs.data && gh.data) {
    backward_impl<scalar_t, reset, surrogate, true, true>(c, gs, gh, o, T, M, p);
  } else if (gs.data) {
    backward_impl<scalar_t, reset, surrogate, true, false>(c, gs, gh, o, T, M, p);
  } else {
    backward_impl<scalar_t, reset, surrogate, false, true>(c, gs, gh, o, T, M, p);
  }
}

template <typename scalar_t, int reset>
void backward_dispatch_surrogate(int64_t surrogate, const scalar_t* c, Operand<scalar_t> gs,
                                 Operand<scalar_t> gh, scalar_t* o, int64_t T, int64_t M,
                                 const Params<scalar_t> p) {
  if (surrogate == kFastSigmoid) {
    backward_dispatch_grads<scalar_t, reset, kFastSigmoid>(c, gs, gh, o, T, M, p);
  } else if (surrogate == kArctan) {
    backward_dispatch_grads<scalar_t, reset, kArctan>(c, gs, gh, o, T, M, p);
  } else {
    backward_dispatch_grads<scalar_t, reset, kSigmoid>(c, gs, gh, o, T, M, p);
  }
}

// backward_(charge, grad_spikes, grad_charge, out, beta, threshold, reset, surrogate, slope):
// dL/dI written into `out` (contiguous, charge's shape) from the gradients at S and H (either may
// be None, not both; expanded-over-time gradients are read without a copy).
void backward_(const at::Tensor& charge, const c10::optional<at::Tensor>& grad_spikes,
               const c10::optional<at::Tensor>& grad_charge, at::Tensor out, double beta,
               double threshold, int64_t reset, int64_t surrogate, double slope) {
  TORCH_CHECK(charge.device().is_cpu() && charge.is_contiguous(),
              "charge must be a contiguous CPU tensor");
  check_state(out, charge, "out");
  TORCH_CHECK(grad_spikes.has_value() || grad_charge.has_value(),
              "grad_spikes and grad_charge cannot both be None");
  TORCH_CHECK(reset >= 0 && reset <= 2, "reset must be 0, 1 or 2");
  TORCH_CHECK(surrogate >= 0 && surrogate <= 2, "surrogate must be 0, 1 or 2");
  const int64_t M = neurons(charge), T = charge.size(0);
  if (T == 0 || M == 0) return;
  const bool need_sg = grad_spikes.has_value() || reset != kNone;
  if (need_sg && surrogate == kSigmoid) {
    // s = sigmoid((H - θ)·k) by the very ATen ops of the reference (its vectorised exp is
    // not reproducible here); the fused pass reads s from `out` and overwrites it.
    at::sub_out(out, charge, threshold).mul_(slope).sigmoid_();
  }
  AT_DISPATCH_FLOATING_TYPES(charge.scalar_type(), "spikebench_lif_backward", [&] {
    const auto p = make_params<scalar_t>(beta, threshold, slope, surrogate);
    at::Tensor keep_s, keep_h;
    const auto gs = operand<scalar_t>(grad_spikes, charge, M, keep_s);
    const auto gh = operand<scalar_t>(grad_charge, charge, M, keep_h);
    const scalar_t* c = charge.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    if (reset == kSubtract) {
      backward_dispatch_surrogate<scalar_t, kSubtract>(surrogate, c, gs, gh, o, T, M, p);
    } else if (reset == kZero) {
      backward_dispatch_surrogate<scalar_t, kZero>(surrogate, c, gs, gh, o, T, M, p);
    } else if (need_sg) {
      backward_dispatch_surrogate<scalar_t, kNone>(surrogate, c, gs, gh, o, T, M, p);
    } else {  // reset none, no spike gradient: the surrogate plays no part
      backward_impl<scalar_t, kNone, kFastSigmoid, false, true>(c, gs, gh, o, T, M, p);
    }
  });
}

}  // namespace spikebench_lif

TORCH_LIBRARY(spikebench_lif, m) {
  m.def("forward_(Tensor(a!) charge, Tensor(b!) spikes, Tensor? bias, float beta, "
        "float threshold, int reset) -> Tensor");
  m.def("backward_(Tensor charge, Tensor? grad_spikes, Tensor? grad_charge, Tensor(a!) out, "
        "float beta, float threshold, int reset, int surrogate, float slope) -> ()");
}

TORCH_LIBRARY_IMPL(spikebench_lif, CPU, m) {
  m.impl("forward_", &spikebench_lif::forward_);
  m.impl("backward_", &spikebench_lif::backward_);
}
