"""NeuroBench's metrics of a trained feed-forward LIF network, computed by spikebench.

The field quotes a network's cost under NeuroBench's names (Yik et al., "The neurobench
framework for benchmarking neuromorphic computing algorithms and systems", Nature
Communications 2025). spikebench computes them itself, from the network's framework-neutral
spec and weights (``export``) and the counters the
rule measured on the test slices; ``tests/harness/test_neurobench.py`` runs NeuroBench 2.3 on an
snnTorch network with the same weights and input and checks every number:

==========================  =================================================================
NeuroBench                  spikebench (results.parquet column)
==========================  =================================================================
Footprint                   ``footprint_bytes``: bytes of the weights and biases at their
                            dtype. NeuroBench also counts the framework's buffers (snnTorch's
                            β, θ, ... of each neuron layer, a few bytes per layer), which are
                            not part of the network spikebench defines.
ConnectionSparsity          ``connection_sparsity``: share of the linear layers' weights that
                            are exactly zero (biases not counted; NeuroBench rounds to 4
                            decimals).
ActivationSparsity          ``activation_sparsity``: share of neuron outputs that are zero,
                            over every LIF layer (the output layer included), time step and
                            test slice: ``1 − spikes / (T · Σ neurons)``.
SynapticOperations
  Effective_MACs            ``macs_per_sample``: multiply-accumulates actually done (non-zero
                            real-valued inputs × fan-out), per slice.
  Effective_ACs             ``acs_per_sample``: accumulates actually done (spikes × fan-out).
  Dense                     ``dense_synops_per_sample``: the operations if every input were
                            non-zero, ``T · Σ fan_in · fan_out`` (biases not counted).
==========================  =================================================================

Effective operations count every non-zero input against every weight of its row, as NeuroBench
does with binarised copies of non-zero weights: they agree while no weight is exactly zero
(``connection_sparsity`` says so). A model that is not a feed-forward LIF network (a reference,
the Tempotron, active learning's readout) gets none of the four columns of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from spikebench.backends.specs import NetworkSpec
    from spikebench.harness.rules.base import TrainedModel

#: spikebench column → NeuroBench's name of the metric.
NEUROBENCH_NAMES = {
    "footprint_bytes": "Footprint",
    "connection_sparsity": "ConnectionSparsity",
    "activation_sparsity": "ActivationSparsity",
    "macs_per_sample": "Effective_MACs",
    "acs_per_sample": "Effective_ACs",
    "dense_synops_per_sample": "Dense",
}
#: The columns this module adds to a feed-forward LIF network's results row.
COLUMNS = ("footprint_bytes", "connection_sparsity", "activation_sparsity",
           "dense_synops_per_sample")


def network_metrics(spec: NetworkSpec,
                    weights: Sequence[tuple[torch.Tensor, torch.Tensor | None]], *,
                    steps: int, spikes_per_sample: float) -> dict[str, float]:
    """The four metrics of ``COLUMNS`` of the network ``spec`` with ``weights`` (one
    ``(W [out, in], b [out] or None)`` per layer) run for ``steps`` time steps, whose LIF layers
    fired ``spikes_per_sample`` spikes per sample in all (the rule's counter).

    Examples
    --------
    >>> import torch
    >>> from spikebench.backends.specs import NetworkSpec
    >>> spec = NetworkSpec(sizes=(4, 3, 2))
    >>> weights = [(torch.ones(3, 4), torch.zeros(3)), (torch.zeros(2, 3), torch.zeros(2))]
    >>> m = network_metrics(spec, weights, steps=10, spikes_per_sample=5.0)
    >>> m["footprint_bytes"], m["connection_sparsity"], m["dense_synops_per_sample"]
    (92.0, 0.3333333333333333, 180.0)
    >>> m["activation_sparsity"]  # 5 spikes of 10 steps x 5 neurons
    0.9
    """
    sizes = spec.sizes
    footprint = 0.0
    zeros = total = 0
    for w, b in weights:
        footprint += w.numel() * w.element_size()
        if b is not None:
            footprint += b.numel() * b.element_size()
        zeros += int((w == 0).sum())
        total += w.numel()
    dense = float(steps * sum(a * b for a, b in pairwise(sizes)))
    outputs = steps * sum(sizes[1:])
    return {"footprint_bytes": footprint,
            "connection_sparsity": zeros / total if total else float("nan"),
            "activation_sparsity": 1.0 - float(spikes_per_sample) / outputs,
            "dense_synops_per_sample": dense}


def model_metrics(model: TrainedModel, activity: Mapping[str, float]) -> dict[str, float]:
    """``network_metrics`` of ``model`` when it exports a feed-forward LIF network
    (``activity``: its counters on the test slices), else nothing."""
    exported = model.export()
    spikes = activity.get("spikes_per_sample")
    if exported is None or spikes is None:
        return {}
    spec, weights = exported
    return network_metrics(spec, weights, steps=int(getattr(model, "train_steps", 1)),
                           spikes_per_sample=float(spikes))
