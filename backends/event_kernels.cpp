// Event-driven (accumulate-only) products of spikebench's LIF engine for binary spike inputs
// (spikebench.backends.event_driven), compiled into the same library as lif_kernels.cpp and
// registered as torch.ops.spikebench_lif.binary_density / event_forward_ / event_weight_grad_.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include "lif_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace {

// Integer type of a lane-wise count: as wide as scalar_t so that the count vectorises.
template <typename scalar_t>
using count_t = std::conditional_t<sizeof(scalar_t) == 4, int32_t, int64_t>;

// Event-driven (accumulate-only) products for binary inputs x ∈ {0, 1}^[R, F]:
//   forward       I[r, :]  = b + Σ_{i: x[r,i] = 1} Wᵀ[i, :]          (no multiplications)
//   weight grad   dWᵀ[i, :] = Σ_{r: x[r,i] = 1} gI[r, :]
// Work is proportional to the number of spikes instead of R·F. The sums run over the active
// inputs in ascending order: the same terms as the dense product, other rounding order.

// Spikes per element of x if every value is exactly 0 or 1, else -1 (one parallel pass). The
// loop only adds comparison results (counts of ones and of zeros), so that it vectorises; x is
// binary iff the two counts add up to n.
template <typename scalar_t>
double binary_density_impl(const scalar_t* x, int64_t n) {
  std::atomic<int64_t> ones{0}, zeros{0};
  at::parallel_for(0, n, 65536, [&](int64_t begin, int64_t end) {
    int64_t o = 0, z = 0;
    for (int64_t k0 = begin; k0 < end; k0 += 65536) {  // lane counts cannot overflow
      const int64_t k1 = std::min<int64_t>(end, k0 + 65536);
      count_t<scalar_t> co = 0, cz = 0;
      for (int64_t k = k0; k < k1; ++k) {
        co += x[k] == scalar_t(1);
        cz += x[k] == scalar_t(0);
      }
      o += co;
      z += cz;
    }
    ones += o;
    zeros += z;
  });
  if (ones.load() + zeros.load() != n) return -1.0;
  return static_cast<double>(ones.load()) / std::max<int64_t>(n, 1);
}

}  // namespace

double spikebench_lif::binary_density(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), "x must be a contiguous CPU tensor");
  double out = -1.0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spikebench_binary_density", [&] {
    out = binary_density_impl<scalar_t>(x.data_ptr<scalar_t>(), x.numel());
  });
  return out;
}

namespace {

// Indices of the non-zero entries of x[0..F) into idx; returns their number. float: eight
// entries per AVX2 compare, their bit mask walked with count-trailing-zeros; else branch-free.
template <typename scalar_t>
inline int64_t active_inputs(const scalar_t* __restrict x, int64_t F, int32_t* __restrict idx) {
  int64_t count = 0;
  int64_t i = 0;
  if constexpr (std::is_same_v<scalar_t, float>) {
    const __m256 zero = _mm256_setzero_ps();
    for (; i + 8 <= F; i += 8) {
      unsigned mask = static_cast<unsigned>(
          _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), zero, _CMP_NEQ_UQ)));
      while (mask != 0u) {
        idx[count++] = static_cast<int32_t>(i + __builtin_ctz(mask));
        mask &= mask - 1u;
      }
    }
  }
  for (; i < F; ++i) {
    idx[count] = static_cast<int32_t>(i);
    count += x[i] != scalar_t(0);
  }
  return count;
}

template <typename scalar_t>
void event_forward_impl(const scalar_t* x, const scalar_t* wt, const scalar_t* bias,
                        scalar_t* out, int64_t R, int64_t F, int64_t N) {
  at::parallel_for(0, R, std::max<int64_t>(1, 8192 / std::max<int64_t>(N, 1)),
                   [&](int64_t begin, int64_t end) {
    std::vector<int32_t> idx(F + 1);
    for (int64_t r = begin; r < end; ++r) {
      scalar_t* __restrict o = out + r * N;
      if (bias != nullptr) {
        for (int64_t n = 0; n < N; ++n) o[n] = bias[n];
      } else {
        for (int64_t n = 0; n < N; ++n) o[n] = scalar_t(0);
      }
      const int64_t k = active_inputs(x + r * F, F, idx.data());
      int64_t a = 0;
      for (; a + 4 <= k; a += 4) {  // four weight rows per pass over the output row
        const scalar_t* __restrict w0 = wt + idx[a] * N;
        const scalar_t* __restrict w1 = wt + idx[a + 1] * N;
        const scalar_t* __restrict w2 = wt + idx[a + 2] * N;
        const scalar_t* __restrict w3 = wt + idx[a + 3] * N;
        for (int64_t n = 0; n < N; ++n) o[n] += (w0[n] + w1[n]) + (w2[n] + w3[n]);
      }
      for (; a < k; ++a) {
        const scalar_t* __restrict w = wt + idx[a] * N;
        for (int64_t n = 0; n < N; ++n) o[n] += w[n];
      }
    }
  });
}

// event_forward_(x [R, F] binary, wt [F, N] = Wᵀ contiguous, bias [N]?, out [R, N]).
}  // namespace

void spikebench_lif::event_forward_(const at::Tensor& x, const at::Tensor& wt,
                                    const c10::optional<at::Tensor>& bias, at::Tensor out) {
  TORCH_CHECK(x.dim() == 2 && wt.dim() == 2 && out.dim() == 2, "x, wt, out must be 2-D");
  TORCH_CHECK(x.is_contiguous() && wt.is_contiguous() && out.is_contiguous(),
              "x, wt, out must be contiguous");
  const int64_t R = x.size(0), F = x.size(1), N = wt.size(1);
  TORCH_CHECK(wt.size(0) == F && out.size(0) == R && out.size(1) == N, "shape mismatch");
  TORCH_CHECK(wt.scalar_type() == x.scalar_type() && out.scalar_type() == x.scalar_type(),
              "dtype mismatch");
  at::Tensor b;
  if (bias.has_value()) {
    b = bias->contiguous();
    TORCH_CHECK(b.numel() == N && b.scalar_type() == x.scalar_type(), "bad bias");
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spikebench_event_forward", [&] {
    event_forward_impl<scalar_t>(x.data_ptr<scalar_t>(), wt.data_ptr<scalar_t>(),
                                 b.defined() ? b.data_ptr<scalar_t>() : nullptr,
                                 out.data_ptr<scalar_t>(), R, F, N);
  });
}

namespace {

template <typename scalar_t>
void event_weight_grad_impl(const scalar_t* x, const scalar_t* g, scalar_t* out, int64_t R,
                            int64_t F, int64_t N) {
  // Threads own column ranges of dWᵀ (no two write the same element); narrow N runs alone.
  at::parallel_for(0, N, N >= 128 ? 64 : std::max<int64_t>(N, 1), [&](int64_t n0, int64_t n1) {
    const int64_t w = n1 - n0;
    std::vector<int32_t> idx(F + 1);
    for (int64_t i = 0; i < F; ++i) {
      scalar_t* o = out + i * N + n0;
      for (int64_t n = 0; n < w; ++n) o[n] = scalar_t(0);
    }
    for (int64_t r = 0; r < R; ++r) {
      const scalar_t* __restrict gr = g + r * N + n0;
      const int64_t k = active_inputs(x + r * F, F, idx.data());
      for (int64_t a = 0; a < k; ++a) {
        scalar_t* __restrict o = out + idx[a] * N + n0;
        for (int64_t n = 0; n < w; ++n) o[n] += gr[n];
      }
    }
  });
}

// event_weight_grad_(x [R, F] binary, g [R, N], out [F, N]): out = xᵀ g by accumulation.
}  // namespace

void spikebench_lif::event_weight_grad_(const at::Tensor& x, const at::Tensor& g,
                                        at::Tensor out) {
  TORCH_CHECK(x.dim() == 2 && g.dim() == 2 && out.dim() == 2, "x, g, out must be 2-D");
  TORCH_CHECK(x.is_contiguous() && g.is_contiguous() && out.is_contiguous(),
              "x, g, out must be contiguous");
  const int64_t R = x.size(0), F = x.size(1), N = g.size(1);
  TORCH_CHECK(g.size(0) == R && out.size(0) == F && out.size(1) == N, "shape mismatch");
  TORCH_CHECK(g.scalar_type() == x.scalar_type() && out.scalar_type() == x.scalar_type(),
              "dtype mismatch");
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spikebench_event_weight_grad", [&] {
    event_weight_grad_impl<scalar_t>(x.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
                                     out.data_ptr<scalar_t>(), R, F, N);
  });
}

TORCH_LIBRARY_FRAGMENT(spikebench_lif, m) {
  m.def("binary_density(Tensor x) -> float");
  m.def("event_forward_(Tensor x, Tensor wt, Tensor? bias, Tensor(a!) out) -> ()");
  m.def("event_weight_grad_(Tensor x, Tensor g, Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(spikebench_lif, CPU, m) {
  m.impl("binary_density", &spikebench_lif::binary_density);
  m.impl("event_forward_", &spikebench_lif::event_forward_);
  m.impl("event_weight_grad_", &spikebench_lif::event_weight_grad_);
}
