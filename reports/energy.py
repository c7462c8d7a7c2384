"""A first-order energy estimate per test sample: operations × energy per operation.

A spiking layer only *accumulates* a weight when an input spike arrives (one AC per synaptic
operation); a conventional (non-spiking) layer multiplies and accumulates every input (one MAC).
Per-operation energies are Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014, 45 nm CMOS, 32-bit floating point: add 0.9 pJ, multiply 3.7 pJ, so

- ``E_AC  = 0.9 pJ`` (one float add) per synaptic operation of an SNN,
- ``E_MAC = 3.7 + 0.9 = 4.6 pJ`` per multiply-accumulate of a reference ANN.

The estimate ignores memory access, which usually dominates; it compares operation counts on one
scale, no more. MACs of a reference row come from its ``macs_per_sample`` column when the harness
wrote one, else from its parameters: logistic regression = ``n_features``; an MLP with hidden
sizes ``h1..hk`` = ``n_features·h1 + h1·h2 + … + hk·1``. Unknown stays NaN (left blank).
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from typing import Any

E_ADD_PJ = 0.9
E_MULT_PJ = 3.7
E_AC_PJ = E_ADD_PJ
E_MAC_PJ = E_MULT_PJ + E_ADD_PJ
CITATION = ("M. Horowitz, \"Computing's energy problem (and what we can do about it)\", "
            "IEEE ISSCC 2014, pp. 10–14 (45 nm CMOS, 32-bit float: add 0.9 pJ, mult 3.7 pJ)")

_HIDDEN_KEYS = ("hidden_layer_sizes", "hidden_sizes", "hidden", "hidden_size", "hidden_units")
_FEATURE_KEYS = ("n_features", "n_features_in", "n_inputs", "input_size")


def _as_float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def reference_macs(rule: str, params: Any, n_features: float | None) -> float:
    """MACs per sample of a reference model from its params (JSON text or dict) and the
    study's feature count; NaN when they do not say enough."""
    if isinstance(params, str):
        try:
            params = json.loads(params) if params else {}
        except ValueError:
            params = {}
    if not isinstance(params, dict):
        params = {}
    features = next((_as_float(params[k]) for k in _FEATURE_KEYS if k in params), math.nan)
    if math.isnan(features) and n_features is not None:
        features = _as_float(n_features)
    if math.isnan(features):
        return math.nan
    if rule == "logistic_regression":
        return features
    hidden = next((params[k] for k in _HIDDEN_KEYS if k in params), None)
    if hidden is None:
        return math.nan
    sizes = [hidden] if isinstance(hidden, int | float | str) else list(hidden)
    widths = [features, *(_as_float(h) for h in sizes), 1.0]
    if any(math.isnan(w) for w in widths):
        return math.nan
    return float(sum(a * b for a, b in pairwise(widths)))


def energy_nj(kind: str, synops: float, macs: float) -> float:
    """Energy per sample in nJ: SNN ``synops × E_AC``, reference ``MACs × E_MAC``."""
    ops, per_op = (synops, E_AC_PJ) if kind == "snn" else (macs, E_MAC_PJ)
    ops = _as_float(ops)
    return ops * per_op / 1000.0 if math.isfinite(ops) else math.nan
