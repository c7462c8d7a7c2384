"""A user's replay of an exported NIR graph in a third-party importer (the export tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikebench.backends.nir_io import membrane_from_current


def run_imported(graph_path: Path, importer: str, net: dict[str, Any],
                 readout: dict[str, Any], inp: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Run ``graph_path`` imported by snnTorch or SpikingJelly on encoded input ``inp``
    ([T, B, features]) and read it out as the sidecar says: (P(lesion), spikes [T, B, 2])."""
    import nir

    graph = nir.read(str(graph_path))
    if importer == "snntorch":
        from snntorch.import_nir import import_from_nir

        module = import_from_nir(graph)
    else:
        from spikingjelly.activation_based.nir_exchange.from_nir import import_from_nir

        module = import_from_nir(graph, dt=net["dt"], step_mode="s")
    currents: list[torch.Tensor] = []
    module.get_submodule(readout["current_node"]).register_forward_hook(
        lambda _m, _i, out: currents.append(out.detach()))
    spikes, state = [], None
    with torch.no_grad():
        for t in range(inp.shape[0]):
            out, state = module(inp[t], state)
            spikes.append(out)
    s, i = torch.stack(spikes), torch.stack(currents)
    logits = (s.sum(0) if readout["logits"] == "spike_count" else
              membrane_from_current(i, s, beta=net["beta"], threshold=net["threshold"],
                                    reset="zero").mean(0))
    return torch.softmax(logits.double(), -1)[:, 1].numpy(), s
