"""Save and load a network (spec + weights + metadata) in a plain, safe format.

The file is a ``torch.save`` archive of tensors and primitives only::

    {"format": "spikebench-network", "version": 1,
     "spec": {NetworkSpec fields}, "weights": [[W, b or None], ...], "meta": {...}}

and is read back with ``torch.load(..., weights_only=True)``, which refuses anything but tensors
and primitive containers: loading a file never runs code. ``meta`` must hold JSON-like values
(dict with string keys, list/tuple, str, int, float, bool, None; NumPy scalars are converted).
Writes are atomic (temporary file, then rename) with the user's file mode.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikebench.backends.base import NetworkSpec
from spikebench.errors import BackendError, DataError
from spikebench.io import atomic_write_bytes
from spikebench.oserror import output_error

FORMAT = "spikebench-network"
VERSION = 1


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON-like primitives, or a clear error naming ``where``."""
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.dim() == 0):
        return _plain(value.item(), where)  # NumPy / 0-d torch scalars (np.float64 is a float)
    if value is None or isinstance(value, bool | int | str | float):
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise BackendError(f"save_network: meta key {k!r} at {where} must be a string")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise BackendError(f"save_network: meta value at {where} has type {type(value).__name__}; "
                       "only str/int/float/bool/None, lists and dicts are stored")


def save_network(path: str | Path, spec: NetworkSpec,
                 weights: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
                 meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``spec``, ``weights`` (``[(W, b | None), ...]``) and ``meta`` to ``path``."""
    path = Path(path)
    if len(weights) != spec.n_layers:
        raise BackendError(f"save_network: {len(weights)} weight pairs for {spec.n_layers} layers")
    spec_d = dataclasses.asdict(spec)
    spec_d["sizes"] = list(spec.sizes)
    payload = {
        "format": FORMAT, "version": VERSION, "spec": spec_d,
        "weights": [[w.detach().cpu().clone(), None if b is None else b.detach().cpu().clone()]
                    for w, b in weights],
        "meta": _plain(dict(meta or {}), "meta"),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    try:  # atomic, with the user's file mode; a full disk is one error naming the file
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        raise output_error(path, exc) from None
    return path


def load_network(path: str | Path
                 ) -> tuple[NetworkSpec, list[tuple[torch.Tensor, torch.Tensor | None]],
                            dict[str, Any]]:
    """``(spec, weights, meta)`` from a file written by :func:`save_network` (safe loading)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such network file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: not a spikebench network file ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{path}: not a spikebench network file (format field missing)")
    if payload.get("version") != VERSION:
        raise DataError(f"{path}: network file version {payload.get('version')!r} is not "
                        f"supported (expected {VERSION})")
    spec_d = dict(payload["spec"])
    spec_d["sizes"] = tuple(spec_d["sizes"])
    try:
        spec = NetworkSpec(**spec_d)
    except (TypeError, BackendError) as exc:
        raise DataError(f"{path}: invalid network spec ({exc})") from exc
    weights = [(w, b) for w, b in payload["weights"]]
    return spec, weights, dict(payload.get("meta") or {})
