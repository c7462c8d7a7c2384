// The entry points the three C++ sources of spikebench's LIF library share (lif_kernels.cpp,
// event_kernels.cpp, network_kernels.cpp): each is also registered as an operator of
// torch.ops.spikebench_lif; network_kernels.cpp calls them directly.

#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <cstdint>

namespace spikebench_lif {

// The LIF recurrence in place over charge (I on entry, H on exit; with a bias, charge holds x Wᵀ
// and the bias is added on the way), spikes into `spikes`; returns the number of spikes.
int64_t lif_forward(at::Tensor& charge, at::Tensor& spikes, const c10::optional<at::Tensor>& bias,
                    double beta, double threshold, int64_t reset);

// dL/dI into `out` from the gradients at S and H (either may be absent, not both).
void backward_(const at::Tensor& charge, const c10::optional<at::Tensor>& grad_spikes,
               const c10::optional<at::Tensor>& grad_charge, at::Tensor out, double beta,
               double threshold, int64_t reset, int64_t surrogate, double slope);

// Fraction of ones in x if every value is exactly 0 or 1, else -1.
double binary_density(const at::Tensor& x);

// out[r] = b + Σ_{i: x[r,i] = 1} Wᵀ[i] for binary x [R, F], wt = Wᵀ [F, N] contiguous.
void event_forward_(const at::Tensor& x, const at::Tensor& wt,
                    const c10::optional<at::Tensor>& bias, at::Tensor out);

// out = xᵀ g ([F, N]) for binary x [R, F] by accumulation.
void event_weight_grad_(const at::Tensor& x, const at::Tensor& g, at::Tensor out);

}  // namespace spikebench_lif
