"""The export bundle's sidecar: what NIR has no node for but a prediction needs — encoder,
feature standardisation, read-out, reset mode, importer caveats (field by field in docs/nir.md).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from spikebench.errors import DataError
from spikebench.harness.folder import ResultsFolder

BUNDLE_FORMAT = "spikebench-nir-bundle"
BUNDLE_VERSION = 1
#: Rows of the deterministic synthetic batch used when the test slices cannot be rebuilt.
SYNTHETIC_ROWS = 256
#: How the surrogate rule's encoder draws its random numbers (``rate`` encoding only).
SEED_CONVENTION = ("a torch.Generator seeded with `seed` at the start of each prediction call; "
                   "rows are encoded in order in chunks of 1024 by "
                   "spikebench.harness.encoding.encode(x, encoding, steps, gain=gain, "
                   "generator=g) -> [steps, rows, features] float32; direct and latency "
                   "encodings use no random numbers")
ENCODER_EQUATIONS = {
    "direct": "x[t] = gain * f",
    "rate": "x[t] = 1 if u[t] < sigmoid(gain * f) else 0, u ~ U(0, 1) from the generator",
    "latency": "one spike at t = round((1 - sigmoid(gain * f)) * (steps - 1))",
}
#: Surrogate-rule loss -> read-out of the output layer (see harness/rules/surrogate.py).
LOSS_READOUT = {"count": "spike_count", "membrane": "mean_membrane", "tet": "mean_membrane"}


def describe(spec: Any, meta: dict[str, Any], model_path: Path, run_dir: Path | None,
             repeat: int) -> dict[str, Any]:
    """The bundle (without measurements) for a network file's ``spec`` and ``meta``."""
    from spikebench.backends.nir_io import DT, IMPORTERS, approximations, importer_problem

    missing: list[str] = []
    encoder = _encoder(meta, missing)
    standardisation = _standardisation(meta, run_dir, repeat, spec.sizes[0], missing)
    readout = _readout(meta, spec, missing)
    reasons = approximations(spec)
    return {
        "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION,
        "graph": {"file": None, "sha256": None, "output": f"spikes of lif_{spec.n_layers - 1}"},
        "source": {"model_file": str(model_path), "cell": meta.get("cell"), "repeat": repeat},
        "network": {"sizes": list(spec.sizes), "beta": spec.beta, "threshold": spec.threshold,
                    "reset": spec.reset, "nir_reset": "zero", "dt": DT, "bias": spec.bias,
                    "surrogate": spec.surrogate, "slope": spec.slope,
                    "equations": "H[t] = beta U[t-1] + W x[t] + b; S[t] = [H[t] > threshold]; "
                                 "U[t] = H[t] (1 - S[t]) (NIR: reset to v_reset = 0)"},
        "encoder": encoder, "standardisation": standardisation, "readout": readout,
        "faithful": not reasons, "approximations": reasons,
        "importers": {name: {"exact": not importer_problem(spec, name),
                             "note": importer_problem(spec, name) or note}
                      for name, note in IMPORTERS.items()},
        "measured": None, "missing": missing,
    }


def backend_of(meta: dict[str, Any]) -> str:
    cell = str(meta.get("cell") or "")
    return cell.split("__")[0] if "__" in cell else "custom"


def _encoder(meta: dict[str, Any], missing: list[str]) -> dict[str, Any] | None:
    """``meta["encoder"]`` if the harness stored it, else the surrogate rule's parameters."""
    src = meta.get("encoder")
    origin = "model file meta['encoder']"
    if not src:
        src, origin = meta.get("params") or {}, "model file meta['params']"
    if not all(k in src for k in ("encoding", "steps")):
        missing.append("encoder: the model file stores neither meta['encoder'] nor the rule's "
                       "params (encoding, gain, steps); a prediction cannot be reproduced")
        return None
    encoding = str(src["encoding"])
    return {"encoding": encoding, "gain": float(src.get("gain", 1.0)),
            "steps": int(src["steps"]), "seed": int(src.get("seed", 0)),
            "equation": ENCODER_EQUATIONS.get(encoding, "unknown"),
            "seed_convention": SEED_CONVENTION, "source": origin}


def _readout(meta: dict[str, Any], spec: Any, missing: list[str]) -> dict[str, Any] | None:
    last = spec.n_layers - 1
    stored = meta.get("readout")
    logits = stored.get("logits") if isinstance(stored, dict) else LOSS_READOUT.get(str(stored))
    logits = logits or LOSS_READOUT.get(str((meta.get("params") or {}).get("loss")))
    if logits is None:
        missing.append("readout: the model file stores neither meta['readout'] nor the rule's "
                       "loss; the logits may be spike counts or the mean output membrane")
        return None
    how = ("sum over t of the graph output (spikes of lif_{l})" if logits == "spike_count" else
           "mean over t of H[t], the membrane of lif_{l} before reset; H is rebuilt from the "
           "output of node affine_{l} (I[t]) and the graph output (S[t]): H[t] = beta U[t-1] + "
           "I[t], U[t] = H[t] (1 - S[t]) (spikebench.backends.nir_io.membrane_from_current)")
    return {"logits": logits, "how": how.format(l=last), "current_node": f"affine_{last}",
            "spike_node": f"lif_{last}", "classes": ["no lesion", "lesion"],
            "probability": "P(lesion) = softmax(logits)[1] (float64)",
            "decision": "lesion if P(lesion) > 0.5"}


def _standardisation(meta: dict[str, Any], run_dir: Path | None, repeat: int, n_features: int,
                     missing: list[str]) -> dict[str, Any] | None:
    """``meta["standardisation"]`` if stored, else recomputed from the results folder's feature
    table and the training patients of ``repeat`` (exactly as the harness scales)."""
    stored = meta.get("standardisation")
    if stored:
        names = stored.get("feature_names", stored.get("features", []))
        out = {"features": list(names), "mean": [float(v) for v in stored["mean"]],
               "std": [float(v) for v in stored["std"]], "source": "model file"}
    else:
        try:
            table, split = table_and_split(run_dir, repeat)
            if split is None:
                raise DataError("splits.json has no train patients for this repeat")
        except DataError as exc:
            missing.append(f"standardisation: not in the model file (meta['standardisation']) "
                           f"and not recomputable from the results folder ({exc})")
            return None
        train = np.isin(table.groups.astype(str), np.asarray(split["train"], dtype=str))
        mean = table.X[train].mean(0)
        std = table.X[train].std(0)
        std[~np.isfinite(std) | (std < 1e-12)] = 1.0
        out = {"features": list(table.feature_names), "mean": mean.tolist(), "std": std.tolist(),
               "source": f"recomputed from {table.path} and the train patients of repeat "
                         f"{repeat} in splits.json"}
    if len(out["mean"]) != n_features:
        missing.append(f"standardisation: {len(out['mean'])} features, but the network has "
                       f"{n_features} inputs; not used")
        return None
    out["formula"] = "(f - mean) / std, float32, features in the order listed"
    return out


def table_and_split(run_dir: Path | None, repeat: int) -> tuple[Any, dict[str, Any] | None]:
    """The results folder's feature table, and the patient lists of ``repeat`` from an
    old-layout ``splits.json`` (``{"<repeat>": {"train": [...], ...}}``; else ``None``)."""
    import tomllib

    from spikebench.datasets.tables import load_feature_table

    if run_dir is None:
        raise DataError("the model file is not inside a results folder's models/")
    folder = ResultsFolder(run_dir)
    protocol, splits, data = (_read(folder.protocol_file, json.loads),
                              _read(folder.splits_file, json.loads),
                              _read(folder.spec_file, tomllib.loads).get("data", {}))
    extracted = data.get("source") in ("phantom", "msd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant columns are dropped with a warning
        table = load_feature_table(
            _feature_table_path(run_dir, protocol),
            label="label" if extracted else data.get("label", "label"),
            group="patient_id" if extracted else data.get("group", "patient_id"))
    split = splits.get(str(repeat))
    return table, split if isinstance(split, dict) and "train" in split else None


def _read(path: Path, parse: Any) -> dict[str, Any]:
    try:
        out = parse(path.read_text())
    except (OSError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def _feature_table_path(run_dir: Path, protocol: dict[str, Any]) -> Path:
    """protocol.json's ``data.features`` (absolute, or relative to the folder), else the
    folder's ``data/features.parquet`` or ``features.parquet``."""
    named = str(protocol.get("data", {}).get("features") or "")
    candidates = ResultsFolder(run_dir).feature_tables(named)
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(f"no feature table found (tried {', '.join(map(str, candidates))})")
