"""A first-order energy estimate per test sample: ACs × E_AC + MACs × E_MAC.

A synaptic event whose presynaptic input is a binary spike only *accumulates* the weight (one
AC); an input that is a real value — a direct-encoded first layer fed with currents, a
real-valued readout, or any layer of a non-spiking reference — must be *multiplied* and then
accumulated (one MAC; NeuroBench counts these as effective MACs). Per-operation energies are
from M. Horowitz, "Computing's energy problem (and what we can do about it)", IEEE ISSCC 2014,
pp. 10–14, 45 nm CMOS, 32-bit floating point: add 0.9 pJ, multiply 3.7 pJ, so

- ``E_AC  = 0.9 pJ`` (one float add),
- ``E_MAC = 3.7 + 0.9 = 4.6 pJ`` (one float multiply and add),
- ``energy = acs_per_sample × E_AC + macs_per_sample × E_MAC``.

The counts are the harness's (``acs_per_sample``, ``macs_per_sample`` in results.parquet; one
definition of every model's cost, including the MLP's). Reports never recompute them. A folder
written before the AC/MAC split has only ``synops_per_sample``: its SNN rows are priced as if
every synaptic operation were an AC and labelled ``synops as ACs (old results)``, which
understates the energy of direct-encoded networks. Memory access, which usually dominates, is
not counted: this compares operation counts on one scale, no more.
"""

from __future__ import annotations

import math
from typing import Any

E_ADD_PJ = 0.9
E_MULT_PJ = 3.7
E_AC_PJ = E_ADD_PJ
E_MAC_PJ = E_MULT_PJ + E_ADD_PJ
CITATION = ("M. Horowitz, \"Computing's energy problem (and what we can do about it)\", "
            "IEEE ISSCC 2014, pp. 10–14 (45 nm CMOS, 32-bit float: add 0.9 pJ, mult 3.7 pJ)")
#: How a row's operation counts were obtained (the cost table's ``cost_basis`` column).
BASIS_SPLIT = "ACs + MACs"
BASIS_OLD = "synops as ACs (old results)"
BASIS_MISSING = "not recorded"


def _as_float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def operation_counts(kind: str, acs: Any, macs: Any, synops: Any) -> tuple[float, float, str]:
    """``(ACs, MACs, basis)`` per sample of one results row. Rows with either new count use
    them (a missing one of the two is 0); an old SNN row without them falls back to
    ``synops`` as ACs; a reference row without MACs is NaN (not recomputed here)."""
    acs, macs, synops = _as_float(acs), _as_float(macs), _as_float(synops)
    if math.isfinite(acs) or math.isfinite(macs):
        return (acs if math.isfinite(acs) else 0.0), (macs if math.isfinite(macs) else 0.0), \
            BASIS_SPLIT
    if kind == "snn" and math.isfinite(synops):
        return synops, 0.0, BASIS_OLD
    return math.nan, math.nan, BASIS_MISSING


def energy_nj(acs: float, macs: float) -> float:
    """Energy per sample in nJ: ``(ACs · E_AC + MACs · E_MAC) / 1000``; NaN when unknown."""
    acs, macs = _as_float(acs), _as_float(macs)
    if not (math.isfinite(acs) and math.isfinite(macs)):
        return math.nan
    return (acs * E_AC_PJ + macs * E_MAC_PJ) / 1000.0
