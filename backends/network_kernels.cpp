// Whole-network passes of spikebench's LIF engine (spikebench.backends.custom.LIFNetworkFunction),
// compiled into the same library as lif_kernels.cpp and registered as
// torch.ops.spikebench_lif.network_forward / network_backward.
//
// The per-layer loop of a train step (per layer: allocate the charge and spike outputs, one
// product, the fused LIF kernel; backwards: the fused backward kernel, weight, bias and input
// gradients) issued ~20 calls from Python per pass, each with its own Python-side bookkeeping
// (storage pool, workspace, dispatch): 0.23-0.27 ms per default train step (both passes,
// examples/step_profile.py). Here the same loop runs in C++: the very ATen products and sums
// and the very kernels, in the same order, so the results equal the per-layer Python path bit
// for bit.
//
// Outputs come from a per-thread storage pool with the contract of spikebench/backends/_pool.py:
// a storage is handed out again only when nothing but the pool refers to it (its reference count
// is back to 1: autograd's saved tensors, the caller's outputs and every view hold one), as a new
// tensor, not a view. Backward temporaries live in a per-thread workspace (they never leave the
// backward pass).

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>
#include <vector>

#include "lif_kernels.h"

namespace {

// ---- storage pool for the [T, B, N] outputs -------------------------------------------------

constexpr int kPerShape = 4;
constexpr int64_t kPoolMaxBytes = int64_t(512) << 20;

struct PoolSlot {
  at::Tensor master;  // the pool's own reference to the storage
};

struct Pool {
  std::vector<PoolSlot> slots;
  int64_t bytes = 0;
};

Pool& pool() {
  thread_local Pool instance;
  return instance;
}

// A new (non-view) tensor of master's shape on master's storage.
at::Tensor on_storage(const at::Tensor& master) {
  return at::empty({0}, master.options()).set_(master.storage(), 0, master.sizes(),
                                                master.strides());
}

// An uninitialised contiguous CPU tensor, on a pooled storage when one is free.
at::Tensor pooled_empty(at::IntArrayRef shape, const at::TensorOptions& options) {
  Pool& p = pool();
  int same = 0;
  for (const PoolSlot& slot : p.slots) {
    if (slot.master.scalar_type() != options.dtype().toScalarType() ||
        slot.master.sizes() != shape) {
      continue;
    }
    ++same;
    if (slot.master.storage().use_count() == 1) return on_storage(slot.master);
  }
  at::Tensor master = at::empty(shape, options);
  const int64_t nbytes = static_cast<int64_t>(master.storage().nbytes());
  if (same < kPerShape && p.bytes + nbytes <= kPoolMaxBytes) {
    p.slots.push_back({master});
    p.bytes += nbytes;
    return on_storage(master);
  }
  return master;
}

// ---- workspace for backward temporaries ------------------------------------------------------

struct WorkspaceSlot {
  int64_t tag;
  at::Tensor buffer;
};

constexpr size_t kWorkspaceSlots = 16;

// A buffer shaped like `like`; the same tag (and shape and dtype) returns the same buffer.
at::Tensor workspace(int64_t tag, at::IntArrayRef shape, const at::TensorOptions& options) {
  thread_local std::vector<WorkspaceSlot> slots;
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].tag == tag && slots[i].buffer.sizes() == shape &&
        slots[i].buffer.scalar_type() == options.dtype().toScalarType()) {
      WorkspaceSlot slot = slots[i];  // most recently used last
      slots.erase(slots.begin() + static_cast<int64_t>(i));
      slots.push_back(slot);
      return slot.buffer;
    }
  }
  if (slots.size() >= kWorkspaceSlots) slots.erase(slots.begin());
  slots.push_back({tag, at::empty(shape, options)});
  return slots.back().buffer;
}

void clear_buffers() {
  Pool& p = pool();
  p.slots.clear();
  p.bytes = 0;
}

std::vector<int64_t> with_last(at::IntArrayRef shape, int64_t last) {
  std::vector<int64_t> out(shape.begin(), shape.end());
  out.back() = last;
  return out;
}

// ---- the passes ------------------------------------------------------------------------------

// network_forward(x, weights, biases, forward_limits, grad_limits, beta, threshold, reset)
//   -> (charges, spikes, counts, events)
// Layer l computes I = inp Wᵀ + b (event-driven when its input is binary with a spike density
// below forward_limits[l], else one dense product; limits <= 0 never measure the density), runs
// the LIF recurrence (charge H and spikes S, [..., N]), and counts the spikes. events[l] = 1 when
// the layer's weight gradient goes event-driven (density below grad_limits[l]). counts: [L] of
// x's dtype.
std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>, at::Tensor, std::vector<int64_t>>
network_forward(const at::Tensor& x, at::TensorList weights,
                const c10::List<c10::optional<at::Tensor>>& biases,
                at::ArrayRef<double> forward_limits, at::ArrayRef<double> grad_limits,
                double beta, double threshold, int64_t reset) {
  const size_t layers = weights.size();
  TORCH_CHECK(layers > 0 && biases.size() == layers && forward_limits.size() == layers &&
                  grad_limits.size() == layers,
              "one bias and two limits per weight");
  TORCH_CHECK(x.device().is_cpu() && x.dim() >= 2, "x must be a CPU tensor [..., F]");
  std::vector<at::Tensor> charges, spikes;
  std::vector<int64_t> events;
  at::Tensor counts = at::empty({static_cast<int64_t>(layers)}, x.options());
  std::vector<int64_t> count_values;
  at::Tensor inp = x;
  int64_t in_count = -1;  // spikes in inp (-1: the network input, measured if needed)
  for (size_t l = 0; l < layers; ++l) {
    const at::Tensor& w = weights[l];
    const int64_t n_out = w.size(0), n_in = w.size(1);
    const c10::optional<at::Tensor> bias = biases.get(l);
    double density = -1.0;
    if (forward_limits[l] > 0 || grad_limits[l] > 0) {
      if (in_count >= 0) {
        density = static_cast<double>(in_count) / std::max<int64_t>(inp.numel(), 1);
      } else if (inp.is_contiguous()) {
        density = spikebench_lif::binary_density(inp);
      }
    }
    const bool event_forward = density >= 0 && density < forward_limits[l];
    events.push_back(density >= 0 && density < grad_limits[l] ? 1 : 0);
    const at::Tensor flat = inp.reshape({-1, n_in});
    at::Tensor charge = pooled_empty(with_last(inp.sizes(), n_out), x.options());
    at::Tensor rows = charge.view({flat.size(0), n_out});
    c10::optional<at::Tensor> pending;
    if (event_forward) {
      spikebench_lif::event_forward_(flat, w.t().contiguous(), bias, rows);
    } else {
      at::mm_out(rows, flat, w.t());
      pending = bias;
    }
    at::Tensor s = pooled_empty(charge.sizes(), x.options());
    in_count = spikebench_lif::lif_forward(charge, s, pending, beta, threshold, reset);
    count_values.push_back(in_count);
    charges.push_back(charge);
    spikes.push_back(s);
    inp = s;
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spikebench_network_counts", [&] {
    scalar_t* c = counts.data_ptr<scalar_t>();
    for (size_t l = 0; l < layers; ++l) c[l] = static_cast<scalar_t>(count_values[l]);
  });
  return {charges, spikes, counts, events};
}

// network_backward(grad_spikes, grad_charge, inputs, charges, weights, has_bias, events,
//                  needs_grad, needs_input_grad, beta, threshold, reset, surrogate, slope)
//   -> (dx, [dW_1, db_1, ..., dW_L, db_L])
// The gradients of the last layer's S and H (either may be absent), back through every layer;
// inputs[l] is layer l's input (x, then the spikes of the layer below); needs_grad[2l] / [2l + 1]:
// whether W_l / b_l need a gradient. Undefined results are None.
std::tuple<at::Tensor, std::vector<at::Tensor>> network_backward(
    const c10::optional<at::Tensor>& grad_spikes, const c10::optional<at::Tensor>& grad_charge,
    at::TensorList inputs, at::TensorList charges, at::TensorList weights,
    at::IntArrayRef has_bias, at::IntArrayRef events, at::IntArrayRef needs_grad,
    bool needs_input_grad, double beta, double threshold, int64_t reset, int64_t surrogate,
    double slope) {
  const int64_t layers = static_cast<int64_t>(weights.size());
  TORCH_CHECK(static_cast<int64_t>(charges.size()) == layers &&
                  static_cast<int64_t>(inputs.size()) == layers &&
                  static_cast<int64_t>(has_bias.size()) == layers &&
                  static_cast<int64_t>(events.size()) == layers &&
                  static_cast<int64_t>(needs_grad.size()) == 2 * layers,
              "one input, charge, bias flag and event flag per layer");
  std::vector<at::Tensor> grads(2 * layers);
  at::Tensor gx;
  c10::optional<at::Tensor> g_s = grad_spikes, g_h = grad_charge;
  for (int64_t layer = layers - 1; layer >= 0; --layer) {
    if (!g_s.has_value() && !g_h.has_value()) break;
    const at::Tensor& charge = charges[layer];
    const at::Tensor& inp = inputs[layer];
    const at::Tensor& w = weights[layer];
    const int64_t n_out = w.size(0), n_in = w.size(1);
    at::Tensor grad = workspace(layer, charge.sizes(), charge.options());
    spikebench_lif::backward_(charge, g_s, g_h, grad, beta, threshold, reset, surrogate, slope);
    const at::Tensor flat = grad.view({-1, n_out});
    if (needs_grad[2 * layer] && events[layer]) {
      at::Tensor out = at::empty({n_in, n_out}, grad.options());
      spikebench_lif::event_weight_grad_(inp.reshape({-1, n_in}), flat, out);
      grads[2 * layer] = out.t();
    } else if (needs_grad[2 * layer]) {
      grads[2 * layer] = flat.t().mm(inp.reshape({-1, n_in}));
    }
    if (has_bias[layer] && needs_grad[2 * layer + 1]) grads[2 * layer + 1] = flat.sum(0);
    if (layer > 0) {
      // tags < 0: the input-gradient buffers (tag -1 - layer), distinct from the grad buffers
      at::Tensor buf = workspace(-1 - layer, inp.sizes(), inp.options());
      at::Tensor buf_rows = buf.view({-1, n_in});
      at::mm_out(buf_rows, flat, w);
      g_s = buf;
      g_h = c10::nullopt;
    } else if (needs_input_grad) {
      gx = flat.mm(w).view(inp.sizes());
    }
  }
  return {gx, grads};
}

void network_clear() { clear_buffers(); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(spikebench_lif, m) {
  m.def("network_forward(Tensor x, Tensor[] weights, Tensor?[] biases, float[] forward_limits, "
        "float[] grad_limits, float beta, float threshold, int reset) "
        "-> (Tensor[], Tensor[], Tensor, int[])");
  m.def("network_backward(Tensor? grad_spikes, Tensor? grad_charge, Tensor[] inputs, "
        "Tensor[] charges, Tensor[] weights, int[] has_bias, int[] events, int[] needs_grad, "
        "bool needs_input_grad, float beta, float threshold, int reset, int surrogate, "
        "float slope) -> (Tensor, Tensor[])");
  m.def("network_clear() -> ()", &network_clear);
}

TORCH_LIBRARY_IMPL(spikebench_lif, CPU, m) {
  m.impl("network_forward", &network_forward);
  m.impl("network_backward", &network_backward);
}
