"""Divergence guards shared by the rules: each raises
:class:`~spikebench.harness.rules.base.DivergedError` (the trial is pruned with its message as
the reason, and the study goes on) instead of letting a fit train on NaN.

A NaN never crosses a threshold, so a NaN feature, pixel, hyper-parameter or weight silences
the neurons it reaches while the read-out and the loss may stay finite: without these checks a
fit would report a chance-level model, not a failure.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from spikebench.harness.rules.base import DivergedError, Split
from spikebench.harness.rules.params import as_dict

if TYPE_CHECKING:
    import torch

    from spikebench.backends.base import TorchModuleMethods

#: |H| beyond this is an exploding membrane: the trial is pruned.
MEMBRANE_LIMIT = 1e6


def check_finite(train: Split, val: Split) -> None:
    """Raise :class:`DivergedError` naming the split if its features hold NaN/inf: a spiking
    layer would silently read NaN as "no spike" and train on garbage."""
    for name, split in (("train", train), ("val", val)):
        bad = ~np.isfinite(np.asarray(split.X, dtype=np.float64))
        if bad.any():
            rows, cols = np.nonzero(bad)
            raise DivergedError(f"non-finite input: {int(bad.sum())} NaN/inf feature values in "
                                f"the {name} split (first at row {rows[0]}, feature {cols[0]})")


def check_finite_params(params: Any) -> None:
    """:class:`DivergedError` naming every real-valued hyper-parameter of ``params`` (a
    parameters dataclass or a mapping) that is NaN or inf: a NaN ``gain`` or ``beta`` makes
    every charge NaN, which never crosses a threshold, so training would run on silent neurons
    and report a chance-level model, not a failure."""
    bad = [f"{name} = {value}" for name, value in as_dict(params).items()
           if isinstance(value, (float, np.floating)) and not math.isfinite(value)]
    if bad:
        raise DivergedError(f"non-finite hyper-parameter: {', '.join(bad)}")


def check_parameters(module: torch.nn.Module | TorchModuleMethods, epoch: int) -> None:
    """:class:`DivergedError` naming the parameters of ``module`` that hold NaN/inf: call it
    after each optimiser step, where NaN gradients of an early layer land. One fused
    ``isfinite`` over all parameters flattened; per tensor only to name culprits."""
    import torch

    named = [(name, param.detach()) for name, param in module.named_parameters()]
    if not named or bool(torch.isfinite(torch.cat([t.reshape(-1) for _, t in named])).all()):
        return
    bad = [name for name, t in named if not bool(torch.isfinite(t).all())]
    raise DivergedError(f"non-finite parameters after an optimiser step at epoch {epoch}: "
                        f"{', '.join(bad)} (NaN/inf gradients)")


def check_training(loss: torch.Tensor, membrane: torch.Tensor, epoch: int) -> None:
    """:class:`DivergedError` for a non-finite loss or a non-finite or exploding membrane
    (``|H| >`` :data:`MEMBRANE_LIMIT`)."""
    import torch

    if not torch.isfinite(loss):
        raise DivergedError(f"non-finite loss ({loss.item()}) at epoch {epoch}")
    peak = membrane.detach().abs().max()
    if not torch.isfinite(peak) or peak > MEMBRANE_LIMIT:
        raise DivergedError(f"non-finite or exploding membrane at epoch {epoch}")
