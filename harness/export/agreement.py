"""The export's measured agreement: spikebench's network and the NIR graph (through each
importer) run on the same encoded inputs — the study's test slices when the results folder
allows, else a deterministic synthetic batch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from spikebench.errors import BackendError, DataError
from spikebench.harness.export.sidecar import SYNTHETIC_ROWS, table_and_split
from spikebench.harness.folder import ResultsFolder


@dataclasses.dataclass
class MeasurementInputs:
    X: np.ndarray                 # standardised features [N, F]
    description: str
    stored_prob: np.ndarray | None = None


def measurement_inputs(run_dir: Path | None, model_path: Path, meta: dict[str, Any],
            bundle: dict[str, Any], repeat: int, n_features: int) -> MeasurementInputs:
    """The stored test slices (standardised), in the order of the study's stored predictions,
    if the results folder allows; else a deterministic synthetic batch (and why)."""
    std = bundle["standardisation"]
    reason = "no standardisation"
    if std is not None:
        try:
            table, split = table_and_split(run_dir, repeat)
            if list(table.feature_names) != std["features"]:
                raise DataError("the feature table's columns differ from the standardisation's")
            rows, prob = _test_rows(table, split, run_dir, model_path, meta, repeat)
            X = (table.X[rows] - np.asarray(std["mean"])) / np.asarray(std["std"])
            return MeasurementInputs(X.astype(np.float32), f"the {len(rows)} test slices of "
                           f"{model_path.stem.rsplit('__', 1)[-1]}", prob)
        except DataError as exc:
            reason = str(exc)
    gen = np.random.default_rng(0)
    X = gen.standard_normal((SYNTHETIC_ROWS, n_features)).astype(np.float32)
    return MeasurementInputs(
        X, f"a deterministic synthetic batch of {SYNTHETIC_ROWS} standard-normal standardised "
           f"feature vectors (numpy seed 0), because the test slices could not be rebuilt "
           f"from the results folder ({reason})")


def _test_rows(table: Any, split: dict[str, Any] | None, run_dir: Path | None, model_path: Path,
               meta: dict[str, Any], repeat: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Feature-table row indices of the test slices, and the stored P(lesion) of each: the
    stored predictions' (patient_id, slice_idx) matched to the table when both are known, else
    the test patients' rows in table order."""
    stored = _stored_predictions(run_dir, model_path, meta, repeat)
    if stored is not None and table.slice_idx is not None and "slice_idx" in stored:
        index = {(str(g), int(i)): k for k, (g, i) in
                 enumerate(zip(table.groups, table.slice_idx))}
        keys = list(zip(stored["patient_id"].astype(str), stored["slice_idx"].astype(int)))
        if all(k in index for k in keys):
            return (np.asarray([index[k] for k in keys], dtype=np.int64),
                    stored["prob"].to_numpy(dtype=np.float64))
    if split is None:
        raise DataError("neither stored predictions with slice_idx nor splits.json test patients")
    test = np.flatnonzero(np.isin(table.groups.astype(str),
                                  np.asarray(split["test"], dtype=str)))
    if stored is not None and len(stored) == len(test):
        return test, stored["prob"].to_numpy(dtype=np.float64)
    return test, None


def _stored_predictions(run_dir: Path | None, model_path: Path, meta: dict[str, Any],
                        repeat: int) -> Any:
    """The study's test predictions of this network at its training steps, or ``None``."""
    import pandas as pd

    cell = str(meta.get("cell") or "")
    if run_dir is None or "__" not in cell:
        return None
    backend, rule = cell.split("__", 1)
    folder = ResultsFolder(run_dir)
    job = model_path.stem.removeprefix(f"{cell}__")
    for path in (folder.predictions(cell, job), folder.table("predictions")):
        if not path.exists():
            continue
        p = pd.read_parquet(path)
        keep = (p["backend"] == backend) & (p["rule"] == rule) & (p["repeat"] == repeat)
        for key in ("fold", "refit"):  # one refit's predictions, never several mixed
            if key in p and meta.get(key) is not None:
                keep &= p[key] == meta[key]
        if "steps" in p and "train_steps" in p:
            keep &= p["steps"] == p["train_steps"]
        if keep.any():
            return p[keep].reset_index(drop=True)
    return None


def measure(spec: Any, weights: Any, graph: Any, inputs: MeasurementInputs, bundle: dict[str, Any],
            backend: str = "custom") -> dict[str, Any] | None:
    """Run spikebench's network and the NIR graph (through each available importer) on the same
    encoded inputs; decision agreement and output spike counts per importer."""
    from spikebench.backends.nir_io import importer_problem, run_imported

    encoder, readout = bundle["encoder"], bundle["readout"]
    if encoder is None or readout is None:
        return None
    threshold = float((bundle.get("decision") or {}).get("threshold", 0.5))
    x = encode_features(inputs.X, encoder)
    ref_spikes, ref_prob = _spikebench_run(spec, weights, x, readout["logits"], backend)
    out: dict[str, Any] = {"inputs": inputs.description, "n": len(inputs.X),
                           "threshold": threshold,
                           "spikebench": {"output_spikes": int(ref_spikes.sum())}}
    if inputs.stored_prob is not None:
        out["spikebench"]["max_abs_diff_vs_stored_predictions"] = float(
            np.abs(ref_prob - inputs.stored_prob).max())
        out["spikebench"]["decision_agreement_with_stored_predictions"] = float(
            np.mean((ref_prob >= threshold) == (inputs.stored_prob >= threshold)))
    for importer in ("snntorch", "spikingjelly"):
        problem = importer_problem(spec, importer)
        try:
            if problem:
                raise BackendError(problem)
            spikes, current = run_imported(graph, x, importer)
        except BackendError as exc:
            out[importer] = {"error": str(exc)}
            continue
        prob = _probability(spikes, current, spec, readout["logits"])
        out[importer] = {
            "output_spikes": int(spikes.sum()),
            # at the study's threshold, with the study's rule (P >= threshold is a lesion)
            "decision_agreement": float(np.mean((prob >= threshold) == (ref_prob >= threshold))),
            "max_abs_prob_diff": float(np.abs(prob - ref_prob).max()),
        }
    return out


def encode_features(X: np.ndarray, encoder: dict[str, Any]) -> Any:
    """``[steps, N, F]`` float32 network input of standardised features ``X``, drawn exactly as
    the surrogate rule does at prediction time (:data:`SEED_CONVENTION`)."""
    import torch

    from spikebench.harness.encoding import encode

    x = torch.as_tensor(X, dtype=torch.float32)
    gen = torch.Generator().manual_seed(int(encoder.get("seed", 0)))
    chunks = [encode(x[i:i + 1024], encoder["encoding"], int(encoder["steps"]),
                     gain=float(encoder["gain"]), generator=gen)
              for i in range(0, len(x), 1024)]
    return torch.cat(chunks, 1).contiguous()


def _spikebench_run(spec: Any, weights: Any, x: Any, logits: str, backend: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from spikebench.backends import get_backend

    try:
        net = get_backend(backend).build(spec)
    except BackendError:
        net = get_backend("custom").build(spec)
    net.set_weights([(w.float(), None if b is None else b.float()) for w, b in weights])
    net.eval()
    with torch.no_grad():
        o = net(x)
    from spikebench.backends.nir_io import readout_logits

    prob = torch.softmax(readout_logits(o.spikes, o.membrane, logits).double(), -1)[:, 1]
    return o.spikes.numpy(), prob.numpy()


def _probability(spikes: Any, current: Any, spec: Any, logits: str) -> np.ndarray:
    """P(lesion) from an imported graph's output spikes and last-layer current (NIR semantics:
    reset to zero)."""
    import torch

    from spikebench.backends.nir_io import membrane_from_current, readout_logits

    membrane = membrane_from_current(current, spikes, beta=spec.beta, threshold=spec.threshold,
                                     reset="zero")
    return torch.softmax(readout_logits(spikes, membrane, logits).double(), -1)[:, 1].numpy()
