"""``spikebench export``: the NIR bundle reproduces spikebench's predictions in snnTorch and
SpikingJelly, and a network NIR cannot represent is refused unless approximating is allowed.

The results folder is built here the way the harness writes it (feature table, splits.json,
protocol.json, spec.toml, models/*.pt, predictions.parquet with the surrogate rule's own
``predict_proba``), so the test does not train.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")
pytest.importorskip("h5py")
pytest.importorskip("nirtorch")
pytest.importorskip("snntorch")
pytest.importorskip("spikingjelly.activation_based.nir_exchange")

import pandas as pd  # noqa: E402
from nir_replay import run_imported  # noqa: E402

from spikebench.backends import NetworkSpec, get_backend  # noqa: E402
from spikebench.backends.conformance import random_weights  # noqa: E402
from spikebench.backends.serialize import save_network  # noqa: E402
from spikebench.cli import main  # noqa: E402
from spikebench.errors import BackendError  # noqa: E402
from spikebench.harness.encoding import encode  # noqa: E402
from spikebench.harness.export import export_run  # noqa: E402
from spikebench.harness.rules.surrogate import SurrogateModel, SurrogateParams  # noqa: E402

#: Probabilities of the imported graphs vs spikebench's: float32 networks, softmax in float64.
PROB_ATOL = 1e-5
N_FEATURES = 5


def make_results_folder(root, *, reset="zero", loss="membrane", encoding="rate", meta_extra=None,
                        harness_meta=False):
    """A results folder with one surrogate-rule network (random weights) and its predictions."""
    rng = np.random.default_rng(0)
    rows = []
    for p in range(9):
        for s in range(12):
            f = rng.normal(loc=[10, -3, 0, 200, 1], scale=[2, 1, 5, 40, 0.1])
            rows.append({"patient_id": f"p{p}", "slice_idx": s, "label": int(f[0] + f[2] > 10),
                         **{f"f_{i}": v for i, v in enumerate(f)}})
    table = pd.DataFrame(rows)
    root.mkdir(parents=True, exist_ok=True)
    table.to_parquet(root / "features.parquet")
    split = {"train": [f"p{i}" for i in range(5)], "val": ["p5", "p6"], "test": ["p7", "p8"]}
    (root / "splits.json").write_text(json.dumps({"0": split}))
    (root / "protocol.json").write_text(json.dumps(
        {"data": {"source": "phantom", "features": str(root / "features.parquet")}}))
    (root / "spec.toml").write_text('[data]\nsource = "phantom"\n')

    X = table[[f"f_{i}" for i in range(N_FEATURES)]].to_numpy(np.float32)
    train = table["patient_id"].isin(split["train"]).to_numpy()
    test = table["patient_id"].isin(split["test"]).to_numpy()
    mean, std = X[train].mean(0), X[train].std(0)
    x_test = ((X[test] - mean) / std).astype(np.float32)

    spec = NetworkSpec(sizes=(N_FEATURES, 16, 2), beta=0.8, threshold=0.6, reset=reset)
    params = {"encoding": encoding, "gain": 1.5, "steps": 10, "loss": loss, "reset": reset}
    net = get_backend("custom").build(spec, seed=0)
    net.set_weights(random_weights(spec, seed=4, scale=0.8, dtype=torch.float32))
    net.eval()
    prob = SurrogateModel(net, SurrogateParams(**params), "cpu", {}).predict_proba(x_test)
    pd.DataFrame({"backend": "custom", "rule": "surrogate", "repeat": 0, "seed": 0,
                  "steps": 10, "train_steps": 10,
                  "patient_id": table["patient_id"][test].to_numpy(),
                  "slice_idx": table["slice_idx"][test].to_numpy(),
                  "label": table["label"][test].to_numpy(), "prob": prob,
                  }).to_parquet(root / "predictions.parquet")
    meta = {"params": params, "repeat": 0, "cell": "custom__surrogate", **(meta_extra or {})}
    if harness_meta:  # what harness/refit.py stores
        meta.update(standardisation={"mean": mean.tolist(), "std": std.tolist(),
                                     "feature_names": [f"f_{i}" for i in range(N_FEATURES)]},
                    encoder={"encoding": encoding, "gain": 1.5, "steps": 10}, readout=loss)
    save_network(root / "models" / "custom__surrogate__r0.pt", spec, net.get_weights(), meta)
    return {"net": net, "prob": prob, "x_test": x_test, "spec": spec, "mean": mean, "std": std}


def reproduce(graph_path, importer):
    """A user's steps with only the bundle: standardise, encode, run the imported graph, read
    out. Returns (P(lesion), output spikes [T, B, 2])."""
    bundle = json.loads(graph_path.with_name(graph_path.name + ".json").read_text())
    std, enc, readout = bundle["standardisation"], bundle["encoder"], bundle["readout"]
    net = bundle["network"]
    table = pd.read_parquet(graph_path.parent / "run" / "features.parquet")
    split = json.loads((graph_path.parent / "run" / "splits.json").read_text())["0"]
    rows = table[table["patient_id"].isin(split["test"])]
    f = rows[std["features"]].to_numpy(np.float32)
    x = torch.as_tensor(((f - np.asarray(std["mean"])) / np.asarray(std["std"]))
                        .astype(np.float32))
    gen = torch.Generator().manual_seed(enc["seed"])
    inp = encode(x, enc["encoding"], enc["steps"], gain=enc["gain"], generator=gen)

    return run_imported(graph_path, importer, net, readout, inp)


@pytest.mark.parametrize("importer", ["snntorch", "spikingjelly"])
@pytest.mark.parametrize("loss,encoding", [("membrane", "rate"), ("count", "direct"),
                                           ("tet", "latency")])
def test_reset_to_zero_bundle_reproduces_predictions(tmp_path, importer, loss, encoding):
    made = make_results_folder(tmp_path / "run", loss=loss, encoding=encoding)
    result = export_run(tmp_path / "run", tmp_path / "model.nir", cell="custom/surrogate")
    assert result.faithful and result.sidecar.exists()
    prob, spikes = reproduce(tmp_path / "model.nir", importer)
    np.testing.assert_allclose(prob, made["prob"], rtol=0, atol=PROB_ATOL)
    assert np.array_equal(prob > 0.5, made["prob"] > 0.5)
    x = torch.as_tensor(made["x_test"])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ref = made["net"](encode(x, encoding, 10, gain=1.5, generator=gen))
    assert torch.equal(spikes, ref.spikes)  # spike for spike
    assert 0 < float(ref.spikes.sum()) < ref.spikes.numel()  # the comparison is not vacuous


def test_bundle_carries_encoder_standardisation_and_readout(tmp_path):
    made = make_results_folder(tmp_path / "run")
    result = export_run(tmp_path / "run", tmp_path / "model.nir", cell="custom/surrogate")
    b = json.loads(result.sidecar.read_text())
    assert b["encoder"]["encoding"] == "rate" and b["encoder"]["steps"] == 10
    assert b["encoder"]["gain"] == 1.5 and b["encoder"]["seed"] == 0
    assert b["standardisation"]["features"] == [f"f_{i}" for i in range(N_FEATURES)]
    np.testing.assert_allclose(b["standardisation"]["mean"], made["mean"], rtol=1e-6)
    np.testing.assert_allclose(b["standardisation"]["std"], made["std"], rtol=1e-6)
    assert b["readout"]["logits"] == "mean_membrane"
    assert b["network"]["reset"] == "zero" and b["missing"] == []
    assert b["measured"]["spikebench"]["max_abs_diff_vs_stored_predictions"] < PROB_ATOL
    for importer in ("snntorch", "spikingjelly"):
        assert b["measured"][importer]["decision_agreement"] == 1.0
    assert b["importers"]["snntorch"]["exact"] and b["importers"]["spikingjelly"]["exact"]
    assert not b["importers"]["norse"]["exact"]
    assert "norse: not supported" in result.report()
    meta = nir.read(str(result.graph)).metadata
    inner = json.loads(str(meta["spikebench_bundle"]))
    assert inner["standardisation"] == b["standardisation"] and inner["encoder"] == b["encoder"]
    np.testing.assert_allclose(meta["spikebench_feature_mean"], made["mean"], rtol=1e-6)
    assert str(meta["spikebench_encoding"]) == "rate"


def test_model_file_metadata_is_preferred(tmp_path):
    std = {"features": [f"f_{i}" for i in range(N_FEATURES)], "mean": [0.0] * N_FEATURES,
           "std": [1.0] * N_FEATURES}
    make_results_folder(tmp_path / "run", meta_extra={
        "standardisation": std, "encoder": {"encoding": "direct", "gain": 2.0, "steps": 7}})
    b = export_run(tmp_path / "run", tmp_path / "m.nir", cell="custom/surrogate").bundle
    assert b["standardisation"]["source"] == "model file"
    assert b["standardisation"]["mean"] == [0.0] * N_FEATURES
    assert (b["encoder"]["encoding"], b["encoder"]["steps"]) == ("direct", 7)


def test_harness_metadata_is_enough_without_splits_json(tmp_path):
    """The model file's standardisation / encoder / readout and the stored predictions'
    (patient_id, slice_idx) rebuild the test inputs; splits.json is not needed."""
    make_results_folder(tmp_path / "run", loss="count", harness_meta=True)
    (tmp_path / "run" / "splits.json").unlink()
    b = export_run(tmp_path / "run", tmp_path / "m.nir", cell="custom/surrogate").bundle
    assert b["standardisation"]["source"] == "model file" and b["missing"] == []
    assert b["readout"]["logits"] == "spike_count"
    assert b["measured"]["n"] == 24
    assert b["measured"]["spikebench"]["max_abs_diff_vs_stored_predictions"] < PROB_ATOL
    assert b["measured"]["snntorch"]["decision_agreement"] == 1.0


def test_subtract_reset_is_refused_without_the_flag(tmp_path, capsys):
    make_results_folder(tmp_path / "run", reset="subtract")
    with pytest.raises(BackendError, match=r"reset 'subtract'.*--allow-approximate"):
        export_run(tmp_path / "run", tmp_path / "m.nir", cell="custom/surrogate")
    code = main(["export", str(tmp_path / "run"), "--to", str(tmp_path / "m.nir"),
                 "--cell", "custom/surrogate"])
    assert code == 2
    err = capsys.readouterr().err
    assert "reset 'subtract'" in err and "--allow-approximate" in err
    assert not (tmp_path / "m.nir").exists() and not (tmp_path / "m.nir.json").exists()


def test_subtract_reset_with_the_flag_prints_the_measured_disagreement(tmp_path, capsys):
    made = make_results_folder(tmp_path / "run", reset="subtract")
    code = main(["export", str(tmp_path / "run"), "--to", str(tmp_path / "m.nir"),
                 "--cell", "custom/surrogate", "--allow-approximate"])
    assert code == 0
    out = capsys.readouterr().out
    assert "APPROXIMATE export: reset 'subtract'" in out
    assert "measured on the 24 test slices of r0" in out
    assert out.count("decisions agree on") == 2 and "output spikes" in out
    b = json.loads((tmp_path / "m.nir.json").read_text())
    assert not b["faithful"] and b["network"]["reset"] == "subtract"
    m = b["measured"]
    assert m["spikebench"]["max_abs_diff_vs_stored_predictions"] < PROB_ATOL
    # the graph as NIR tools run it (reset to zero) really is a different network
    assert m["snntorch"]["output_spikes"] != m["spikebench"]["output_spikes"]
    assert m["snntorch"] == m["spikingjelly"]
    prob, _ = reproduce(tmp_path / "m.nir", "snntorch")
    agree = float(np.mean((prob > 0.5) == (made["prob"] > 0.5)))
    assert agree == pytest.approx(m["snntorch"]["decision_agreement"])


def test_reset_none_is_refused(tmp_path):
    make_results_folder(tmp_path / "run", reset="none")
    with pytest.raises(BackendError, match="reset 'none'"):
        export_run(tmp_path / "run", tmp_path / "m.nir", cell="custom/surrogate")


def test_loose_model_file_is_measured_on_a_synthetic_batch(tmp_path):
    make_results_folder(tmp_path / "run", reset="subtract")
    loose = tmp_path / "net.pt"
    shutil.copy(tmp_path / "run" / "models" / "custom__surrogate__r0.pt", loose)
    result = export_run(loose, tmp_path / "m.nir", allow_approximate=True)
    report = result.report()
    assert "synthetic batch of 256" in report and "missing: standardisation" in report
    assert result.bundle["standardisation"] is None
    assert "decision_agreement" in result.bundle["measured"]["snntorch"]
