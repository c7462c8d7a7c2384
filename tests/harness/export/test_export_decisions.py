"""An exported network makes the study's decisions: trained by a real (tiny) study, exported
with the default choices, loaded in snnTorch (``snntorch.import_from_nir``) and SpikingJelly's
NIR exchange, run with nothing but the bundle (sidecar: standardisation, encoder, read-out,
decision rule), it decides every test slice of its refit exactly as the study did
(``prob >= threshold`` of results.parquet) — for every encoding the export supports.

Guards (ecosystem issue, export items): the sidecar's decision rule is the study's threshold
chosen on validation, not ``P > 0.5``; the graph metadata carries it and the provenance.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")
pytest.importorskip("snntorch")
pytest.importorskip("spikingjelly.activation_based.nir_exchange")

from nir_replay import run_imported  # noqa: E402
from spec_text import tiny_spec  # noqa: E402

from spikebench.cli import main  # noqa: E402
from spikebench.harness.encoding import encode  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: The encodings the export supports (docs/nir.md), each with a read-out of its own.
ENCODINGS = [("direct", "membrane"), ("rate", "count"), ("latency", "tet")]


def _study(tmp_path: Path, feature_table: Path, encoding: str, loss: str) -> Path:
    spec = tmp_path / "study.toml"
    spec.write_text(tiny_spec(feature_table, study={"name": f"exp-{encoding}"},
                              split={"scheme": "nested-cv", "repeats": 1, "outer_folds": 2,
                                     "refit_seeds": 2},
                              search={"trials": 1},
                              space_surrogate={"epochs": 6, "hidden": 32, "steps": 8,
                                               "encoding": encoding, "loss": loss,
                                               "reset": "zero", "gain": 2.0, "lr": 0.02,
                                               "beta": 0.9, "threshold": 0.5}))
    out = tmp_path / "run"
    assert main(["study", "run", str(spec), "--out", str(out), "--quiet"]) == 0
    return out


def _user_decisions(graph_path: Path, features: Path, importer: str, test_rows: pd.DataFrame
                    ) -> tuple[np.ndarray, float]:
    """A user's steps with only the bundle; returns (decisions, total output spikes)."""
    bundle = json.loads(graph_path.with_name(graph_path.name + ".json").read_text())
    std, enc, readout, net = (bundle[k] for k in ("standardisation", "encoder", "readout",
                                                   "network"))
    table = pd.read_parquet(features).set_index(["patient_id", "slice_idx"])
    rows = table.loc[list(zip(test_rows["patient_id"], test_rows["slice_idx"]))]
    f = rows[std["features"]].to_numpy(np.float32)
    x = torch.as_tensor(((f - np.asarray(std["mean"])) / np.asarray(std["std"]))
                        .astype(np.float32))
    gen = torch.Generator().manual_seed(enc["seed"])
    inp = torch.cat([encode(x[i:i + 1024], enc["encoding"], enc["steps"], gain=enc["gain"],
                            generator=gen) for i in range(0, len(x), 1024)], 1)
    p_lesion, s = run_imported(graph_path, importer, net, readout, inp)
    threshold = bundle["decision"]["threshold"]
    assert bundle["readout"]["decision"] == f"lesion if P(lesion) >= {threshold!r}"
    return p_lesion >= threshold, float(s.sum())


@pytest.mark.parametrize(("encoding", "loss"), ENCODINGS)
def test_an_exported_network_reproduces_the_study_decisions(tmp_path, feature_table,
                                                            encoding, loss, capfd):
    out = _study(tmp_path, feature_table, encoding, loss)
    graph = tmp_path / "model.nir"
    capfd.readouterr()
    # the second refit of the second outer fold: a nested-CV key with fold and refit
    assert main(["export", str(out), "--to", str(graph), "--fold", "1", "--refit", "1"]) == 0
    shown = capfd.readouterr()
    assert "Triton" not in shown.err + shown.out  # torch's chatter never reaches the user
    bundle = json.loads((tmp_path / "model.nir.json").read_text())
    results = pd.read_parquet(out / "results.parquet")
    row = results[(results["rule"] == "surrogate") & (results["fold"] == 1)
                  & (results["refit"] == 1)].iloc[0]
    decision = bundle["decision"]
    assert decision["threshold"] == float(row["threshold"]) and decision["threshold_rule"] == (
        "youden")
    prov = decision["provenance"]
    assert (prov["cell"], prov["repeat"], prov["fold"], prov["refit"]) == (
        "custom/surrogate", 0, 1, 1)
    assert prov["seed"] == int(row["seed"]) and prov["best_trial"] == int(row["best_trial"])
    assert prov["study"] == f"exp-{encoding}"
    identity = json.loads((out / "identity.json").read_text())
    assert prov["spec_sha256"] == identity["spec_sha256"]
    meta = nir.read(str(graph)).metadata
    assert float(meta["spikebench_decision_threshold"]) == decision["threshold"]
    assert json.loads(str(meta["spikebench_provenance"])) == prov

    preds = pd.read_parquet(out / "predictions.parquet")
    preds = preds[(preds["rule"] == "surrogate") & (preds["fold"] == 1) & (preds["refit"] == 1)
                  & (preds["steps"] == preds["train_steps"])].reset_index(drop=True)
    study_decisions = preds["prob"].to_numpy() >= row["threshold"]
    features = Path(json.loads((out / "protocol.json").read_text())["data"]["features"])
    for importer in ("snntorch", "spikingjelly"):
        decisions, spikes = _user_decisions(graph, features, importer, preds)
        assert np.array_equal(decisions, study_decisions), importer
        assert bundle["measured"][importer]["decision_agreement"] == 1.0
    assert study_decisions.any() and not study_decisions.all()  # not a vacuous comparison
    assert spikes > 0
    assert "spikebench" in sys.modules  # (the user's steps needed nothing but the bundle)
