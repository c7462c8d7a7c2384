"""``spikebench export``: a trained network of a results folder to a NIR bundle.

The bundle is the NIR graph ``model.nir`` plus a sidecar ``model.nir.json`` holding what NIR has
no node for but a prediction needs — encoder, feature standardisation, read-out, reset mode,
importer caveats, measured agreement (field by field in docs/nir.md). The same JSON is the
graph's ``metadata["spikebench_bundle"]``, with flat ``spikebench_*`` keys beside it. A
prediction is ``x = encode((f - mean) / std)``, run the graph, ``logits = readout``,
``P(lesion) = softmax(logits)[1]``. A network NIR cannot represent (subtract or no reset) is
refused unless ``allow_approximate``; then the measured disagreement says how far off it is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from spikebench.errors import BackendError, DataError

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


@dataclasses.dataclass
class ExportResult:
    """What :func:`export_run` wrote and measured; ``report()`` is what the CLI prints."""

    graph: Path
    sidecar: Path
    bundle: dict[str, Any]

    @property
    def faithful(self) -> bool:
        return bool(self.bundle["faithful"])

    def report(self) -> str:
        """Human-readable summary: files, approximations, measured agreement, missing parts."""
        b = self.bundle
        lines = [f"wrote {self.graph} (NIR graph) and {self.sidecar} (encoder, standardisation, "
                 "read-out)"]
        for reason in b["approximations"]:
            lines.append(f"APPROXIMATE export: {reason}")
        lines += _measured_lines(b.get("measured"), b["faithful"])
        lines += [f"{name}: {imp['note']}" for name, imp in b["importers"].items()
                  if not imp["exact"]]
        lines += [f"missing: {m}" for m in b["missing"]]
        return "\n".join(lines)


def pick_model(run: Path, cell: str | None, repeat: int) -> Path:
    """The ``models/*.pt`` file for ``cell`` (``backend/rule``) and ``repeat``; by default the
    cell with the best mean test patient PR-AUC among those with a saved network."""
    if run.is_file():
        return run
    models = run / "models"
    if cell is None:
        import pandas as pd

        res_path = run / "results.parquet"
        if not res_path.exists():
            raise DataError(f"{res_path} not found: is {run} a spikebench results folder?")
        res = pd.read_parquet(res_path)
        res = res[(res["status"] == "ok") & (res["kind"] == "snn")]
        ranked = (res.groupby(["backend", "rule"])["test_patient_pr_auc"].mean()
                  .sort_values(ascending=False))
        for backend, rule in ranked.index:
            path = models / f"{backend}__{rule}__r{repeat}.pt"
            if path.exists():
                return path
        raise DataError(f"no saved network in {models} (rules without a LIF network, e.g. the "
                        "Tempotron, are not exportable)")
    if cell.count("/") != 1:
        raise DataError(f"--cell must be BACKEND/RULE, got {cell!r}")
    path = models / f"{cell.replace('/', '__')}__r{repeat}.pt"
    if not path.exists():
        have = sorted(p.stem for p in models.glob("*.pt")) if models.exists() else []
        raise DataError(f"{path} not found; saved networks: {', '.join(have) or 'none'}")
    return path


def export_run(run: str | Path, to: str | Path, *, cell: str | None = None, repeat: int = 0,
               allow_approximate: bool = False) -> ExportResult:
    """Write the chosen network as a NIR graph ``to`` plus the sidecar ``to + ".json"``.

    Raises :class:`BackendError` when NIR cannot represent the network exactly (e.g. a
    subtract reset) unless ``allow_approximate``; the result's ``bundle["measured"]`` then holds
    the disagreement between spikebench and the graph as snnTorch / SpikingJelly run it.
    """
    from spikebench.backends.nir_io import approximations
    from spikebench.backends.serialize import load_network

    path = pick_model(Path(run), cell, repeat)
    spec, weights, meta = load_network(path)
    reasons = approximations(spec)
    if reasons and not allow_approximate:
        raise BackendError(
            f"{path}: NIR cannot represent this network exactly: {'; '.join(reasons)}. Retrain "
            "with reset 'zero' (study spec: [space.surrogate] reset = \"zero\"), or pass "
            "--allow-approximate to export the reset-to-zero graph anyway and print the "
            "measured disagreement.")
    run_dir = path.parent.parent if path.parent.name == "models" else None  # loose file
    repeat = int(meta.get("repeat", repeat))
    bundle = describe(spec, meta, path, run_dir, repeat)
    inputs = _inputs(run_dir, path, meta, bundle, repeat, spec.sizes[0])
    to = Path(to)
    sidecar = to.with_name(to.name + ".json")
    bundle["graph"]["file"] = to.name
    graph = _graph(spec, weights, bundle)
    bundle["measured"] = measure(spec, weights, graph, inputs, bundle, _backend_name(meta))
    graph = _graph(spec, weights, bundle)
    _write_graph(to, graph)
    bundle["graph"]["sha256"] = hashlib.sha256(to.read_bytes()).hexdigest()
    from spikebench.io import write_json

    write_json(sidecar, bundle)
    return ExportResult(to, sidecar, bundle)


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


def _backend_name(meta: dict[str, Any]) -> str:
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
            table, split = _table_and_split(run_dir, repeat)
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


def _table_and_split(run_dir: Path | None, repeat: int) -> tuple[Any, dict[str, Any] | None]:
    """The results folder's feature table, and the patient lists of ``repeat`` from an
    old-layout ``splits.json`` (``{"<repeat>": {"train": [...], ...}}``; else ``None``)."""
    import tomllib

    from spikebench.datasets.tables import load_feature_table

    if run_dir is None:
        raise DataError("the model file is not inside a results folder's models/")
    protocol, splits, data = (_read(run_dir / "protocol.json", json.loads),
                              _read(run_dir / "splits.json", json.loads),
                              _read(run_dir / "spec.toml", tomllib.loads).get("data", {}))
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
    candidates = [Path(named), run_dir / named] if named else []
    candidates += [run_dir / "data" / "features.parquet", run_dir / "features.parquet"]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(f"no feature table found (tried {', '.join(map(str, candidates))})")


@dataclasses.dataclass
class _Inputs:
    X: np.ndarray                 # standardised features [N, F]
    description: str
    stored_prob: np.ndarray | None = None


def _inputs(run_dir: Path | None, model_path: Path, meta: dict[str, Any],
            bundle: dict[str, Any], repeat: int, n_features: int) -> _Inputs:
    """The stored test slices (standardised), in the order of the study's stored predictions,
    if the results folder allows; else a deterministic synthetic batch (and why)."""
    std = bundle["standardisation"]
    reason = "no standardisation"
    if std is not None:
        try:
            table, split = _table_and_split(run_dir, repeat)
            if list(table.feature_names) != std["features"]:
                raise DataError("the feature table's columns differ from the standardisation's")
            rows, prob = _test_rows(table, split, run_dir, model_path, meta, repeat)
            X = (table.X[rows] - np.asarray(std["mean"])) / np.asarray(std["std"])
            return _Inputs(X.astype(np.float32), f"the {len(rows)} test slices of "
                           f"{model_path.stem.rsplit('__', 1)[-1]}", prob)
        except DataError as exc:
            reason = str(exc)
    gen = np.random.default_rng(0)
    X = gen.standard_normal((SYNTHETIC_ROWS, n_features)).astype(np.float32)
    return _Inputs(X, f"a deterministic synthetic batch of {SYNTHETIC_ROWS} standard-normal "
                      f"standardised feature vectors (numpy seed 0), because the test slices "
                      f"could not be rebuilt from the results folder ({reason})")


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
    for path in (run_dir / "predictions" / f"{model_path.stem}.parquet",
                 run_dir / "predictions.parquet"):
        if not path.exists():
            continue
        p = pd.read_parquet(path)
        keep = (p["backend"] == backend) & (p["rule"] == rule) & (p["repeat"] == repeat)
        if "fold" in p and meta.get("fold") is not None:
            keep &= p["fold"] == meta["fold"]
        if "steps" in p and "train_steps" in p:
            keep &= p["steps"] == p["train_steps"]
        if keep.any():
            return p[keep].reset_index(drop=True)
    return None


def measure(spec: Any, weights: Any, graph: Any, inputs: _Inputs, bundle: dict[str, Any],
            backend: str = "custom") -> dict[str, Any] | None:
    """Run spikebench's network and the NIR graph (through each available importer) on the same
    encoded inputs; decision agreement and output spike counts per importer."""
    from spikebench.backends.nir_io import importer_problem, run_imported

    encoder, readout = bundle["encoder"], bundle["readout"]
    if encoder is None or readout is None:
        return None
    x = encode_features(inputs.X, encoder)
    ref_spikes, ref_prob = _spikebench_run(spec, weights, x, readout["logits"], backend)
    out: dict[str, Any] = {"inputs": inputs.description, "n": len(inputs.X),
                           "spikebench": {"output_spikes": int(ref_spikes.sum())}}
    if inputs.stored_prob is not None:
        out["spikebench"]["max_abs_diff_vs_stored_predictions"] = float(
            np.abs(ref_prob - inputs.stored_prob).max())
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
            "decision_agreement": float(np.mean((prob > 0.5) == (ref_prob > 0.5))),
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


def _graph(spec: Any, weights: Any, bundle: dict[str, Any]) -> Any:
    """The NIR graph with the bundle as metadata (flat keys and the whole JSON)."""
    from spikebench.backends.nir_io import to_nir

    meta: dict[str, Any] = {"spikebench_bundle": json.dumps(bundle),
                            "spikebench_threshold": float(spec.threshold)}
    if bundle["encoder"]:
        enc = bundle["encoder"]
        meta.update(spikebench_encoding=enc["encoding"], spikebench_gain=enc["gain"],
                    spikebench_steps=enc["steps"], spikebench_seed=enc["seed"])
    if bundle["standardisation"]:
        std = bundle["standardisation"]
        meta.update(spikebench_feature_names=list(std["features"]),
                    spikebench_feature_mean=np.asarray(std["mean"], dtype=np.float64),
                    spikebench_feature_std=np.asarray(std["std"], dtype=np.float64))
    if bundle["readout"]:
        meta["spikebench_readout"] = bundle["readout"]["logits"]
    return to_nir(spec, weights, metadata=meta)


def _write_graph(to: Path, graph: Any) -> None:
    """``nir.write`` to a temporary file next to ``to``, then rename (atomic)."""
    import nir

    to.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{to.name}.", dir=to.parent)
    os.close(fd)
    try:
        nir.write(tmp, graph)
        os.replace(tmp, to)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _measured_lines(measured: dict[str, Any] | None, faithful: bool) -> list[str]:
    if not measured:
        return ["not measured: the encoder or read-out is unknown (see missing)"]
    head = "measured" if not faithful else "verified"
    ref = measured["spikebench"]
    lines = [f"{head} on {measured['inputs']}:"]
    if "max_abs_diff_vs_stored_predictions" in ref:
        lines.append(f"  spikebench reproduces the stored predictions to "
                     f"{ref['max_abs_diff_vs_stored_predictions']:.2g} (max |Δ P(lesion)|)")
    for importer in ("snntorch", "spikingjelly"):
        m = measured.get(importer) or {}
        if "error" in m:
            lines.append(f"  {importer}: not run ({m['error']})")
        elif m:
            lines.append(f"  {importer}: decisions agree on {100 * m['decision_agreement']:.1f} "
                         f"%; output spikes {m['output_spikes']} vs spikebench "
                         f"{ref['output_spikes']}; max |Δ P(lesion)| "
                         f"{m['max_abs_prob_diff']:.2g}")
    return lines
