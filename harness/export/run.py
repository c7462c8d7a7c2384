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
from pathlib import Path
from typing import Any

import numpy as np

from spikebench.errors import BackendError, DataError
from spikebench.harness.export.agreement import measure, measurement_inputs
from spikebench.harness.export.choice import Choice, choose
from spikebench.harness.export.sidecar import BUNDLE_FORMAT, backend_of, describe


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
                 "read-out, decision)"]
        decision = b.get("decision")
        if decision:
            p = decision["provenance"]
            where = ", ".join(f"{k} {p[k]}" for k in ("repeat", "fold", "refit", "seed")
                              if p.get(k) is not None)
            lines.append(f"network: {p.get('cell') or p.get('model_file')}"
                         + (f" ({where})" if where else "")
                         + f"; decision: {decision['rule']} (threshold: "
                           f"{decision['threshold_source']})")
        for reason in b["approximations"]:
            lines.append(f"APPROXIMATE export: {reason}")
        lines += _measured_lines(b.get("measured"), b["faithful"])
        lines += [f"{name}: {imp['note']}" for name, imp in b["importers"].items()
                  if not imp["exact"]]
        lines += [f"missing: {m}" for m in b["missing"]]
        return "\n".join(lines)


def pick_model(run: Path, cell: str | None = None, repeat: int | None = None,
               fold: int | None = None, refit: int | None = None) -> Path:
    """The ``models/*.pt`` file for ``cell`` (``backend/rule``) and the refit ``repeat`` /
    ``fold`` / ``refit`` (default: the first one saved); by default the cell with the best mean
    validation score among those with a saved network (:func:`.choice.choose`)."""
    return choose(Path(run), cell, repeat, fold, refit).model


def export_run(run: str | Path, to: str | Path, *, cell: str | None = None,
               repeat: int | None = None, fold: int | None = None, refit: int | None = None,
               allow_approximate: bool = False) -> ExportResult:
    """Write the chosen network as a NIR graph ``to`` plus the sidecar ``to + ".json"``.

    The bundle carries the study's decisions: the threshold chosen on validation, its rule and
    the refit's provenance (:mod:`.choice`); agreement is measured at that threshold. Raises
    :class:`BackendError` when NIR cannot represent the network exactly (e.g. a subtract
    reset) unless ``allow_approximate``; the result's ``bundle["measured"]`` then holds the
    disagreement between spikebench and the graph as snnTorch / SpikingJelly run it. ``to`` and
    the sidecar may replace only an earlier export (never another file: :mod:`spikebench.io`).
    """
    from spikebench.backends.nir_io import approximations
    from spikebench.backends.serialize import load_network

    to = Path(to)
    sidecar = to.with_name(to.name + ".json")
    _refuse_foreign_outputs(to, sidecar)
    choice = choose(Path(run), cell, repeat, fold, refit)
    path = choice.model
    spec, weights, meta = load_network(path)
    reasons = approximations(spec)
    if reasons and not allow_approximate:
        raise BackendError(
            f"{path}: NIR cannot represent this network exactly: {'; '.join(reasons)}. Retrain "
            "with reset 'zero' (study spec: [space.surrogate] reset = \"zero\"), or pass "
            "--allow-approximate to export the reset-to-zero graph anyway and print the "
            "measured disagreement.")
    run_dir = choice.run_dir
    repeat = int(meta.get("repeat", repeat or 0))
    bundle = describe(spec, meta, path, run_dir, repeat)
    bundle["decision"] = decision_record(choice)
    if bundle["readout"]:
        bundle["readout"]["decision"] = bundle["decision"]["rule"]
    inputs = measurement_inputs(run_dir, path, meta, bundle, repeat, spec.sizes[0])
    bundle["graph"]["file"] = to.name
    graph = _graph(spec, weights, bundle)
    bundle["measured"] = measure(spec, weights, graph, inputs, bundle, backend_of(meta))
    graph = _graph(spec, weights, bundle)
    _write_graph(to, graph)
    bundle["graph"]["sha256"] = hashlib.sha256(to.read_bytes()).hexdigest()
    from spikebench.io import write_json

    write_json(sidecar, bundle)
    return ExportResult(to, sidecar, bundle)


def decision_record(choice: Choice) -> dict[str, Any]:
    """The sidecar's ``decision``: the study's threshold, its rule and the refit's provenance."""
    return {"threshold": choice.threshold, "threshold_rule": choice.threshold_rule,
            "threshold_source": choice.threshold_source,
            "rule": f"lesion if P(lesion) >= {choice.threshold!r}",
            "provenance": choice.provenance}


def _refuse_foreign_outputs(to: Path, sidecar: Path) -> None:
    """``--to`` and its sidecar may replace an earlier export only (the rule of
    :mod:`spikebench.io`), checked before any work."""
    from spikebench.io import refuse_foreign

    fix = "choose another --to (a new file name), or move that file yourself"
    refuse_foreign(to, is_exported_graph, error=DataError, what="a NIR graph spikebench "
                   "exported", fix=fix)
    refuse_foreign(sidecar, is_bundle_sidecar, error=DataError,
                   what="the sidecar of a spikebench export", fix=fix)


def is_exported_graph(path: Path) -> bool:
    """A NIR (HDF5) file whose graph metadata holds ``spikebench_bundle``."""
    import h5py  # type: ignore[import-untyped]  # no stubs; installed with the nir extra

    with h5py.File(path, "r") as f:
        node = f.get("node")
        return node is not None and "metadata" in node and "spikebench_bundle" in node["metadata"]


def is_bundle_sidecar(path: Path) -> bool:
    """A JSON object of format :data:`~.sidecar.BUNDLE_FORMAT`."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return isinstance(data, dict) and data.get("format") == BUNDLE_FORMAT


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
    decision = bundle.get("decision")
    if decision:  # the study's decisions: threshold, its rule, the refit's provenance
        meta.update(spikebench_decision_threshold=float(decision["threshold"]),
                    spikebench_decision_rule=decision["rule"],
                    spikebench_threshold_rule=decision["threshold_rule"],
                    spikebench_provenance=json.dumps(decision["provenance"], sort_keys=True))
        meta.update({f"spikebench_{key}": value
                     for key, value in decision["provenance"].items()
                     if isinstance(value, (str, int, float)) and not isinstance(value, bool)})
    return to_nir(spec, weights, metadata=meta)


def _write_graph(to: Path, graph: Any) -> None:
    """``nir.write`` to a temporary file next to ``to``, then rename (atomic, the user's file
    mode: :func:`spikebench.io.atomic_output`)."""
    import nir

    from spikebench.io import atomic_output
    from spikebench.oserror import output_error

    try:
        with atomic_output(to) as tmp:
            nir.write(str(tmp), graph)
    except OSError as exc:
        raise output_error(to, exc) from None


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
                         f"% (at the study's threshold); output spikes {m['output_spikes']} vs "
                         f"spikebench "
                         f"{ref['output_spikes']}; max |Δ P(lesion)| "
                         f"{m['max_abs_prob_diff']:.2g}")
    return lines
