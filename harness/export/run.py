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
from pathlib import Path
from typing import Any

import numpy as np

from spikebench.errors import BackendError, DataError
from spikebench.harness.export.agreement import measure, measurement_inputs
from spikebench.harness.export.sidecar import backend_of, describe
from spikebench.harness.folder import ResultsFolder


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
    folder = ResultsFolder(run)
    models = folder.models_dir
    if cell is None:
        import pandas as pd

        res_path = folder.table("results")
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
    # a loose model file has no results folder to read standardisation and test rows from
    run_dir = (path.parent.parent if path.parent == ResultsFolder(path.parent.parent).models_dir
               else None)
    repeat = int(meta.get("repeat", repeat))
    bundle = describe(spec, meta, path, run_dir, repeat)
    inputs = measurement_inputs(run_dir, path, meta, bundle, repeat, spec.sizes[0])
    to = Path(to)
    sidecar = to.with_name(to.name + ".json")
    bundle["graph"]["file"] = to.name
    graph = _graph(spec, weights, bundle)
    bundle["measured"] = measure(spec, weights, graph, inputs, bundle, backend_of(meta))
    graph = _graph(spec, weights, bundle)
    _write_graph(to, graph)
    bundle["graph"]["sha256"] = hashlib.sha256(to.read_bytes()).hexdigest()
    from spikebench.io import write_json

    write_json(sidecar, bundle)
    return ExportResult(to, sidecar, bundle)


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
