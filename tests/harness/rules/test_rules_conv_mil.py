"""A user trains the attention-MIL head on the convolutional SNN (``conv_snn_mil``): it conforms
on every conv backend, scores patients (one probability per bag), learns a bag label carried
by a few slices, reads crops in bounded chunks, stops on divergence and runs in a study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spikebench.backends import get_backend
from spikebench.backends.conv import conv_backends
from spikebench.datasets.crops import ImageRows
from spikebench.harness.rules import DivergedError, FitContext, Split, get_rule
from spikebench.harness.rules.base import hide_labels
from spikebench.harness.rules.conformance import check_rule, held_out_image_problem
from spikebench.harness.space import default_values

SMALL = {"epochs": 2, "channels": 4, "hidden": 8, "attention": 4, "steps": 4,
         "encoding": "direct"}


def _fit(train: Split, val: Split, backend: str = "spikingjelly", metric: str = "pr_auc",
         **params):
    rule = get_rule("conv_snn_mil")
    chosen = default_values(rule.search_space()) | SMALL | params
    ctx = FitContext.for_validation(val, metric, get_backend(backend), seed=0)
    return rule.fit(train, hide_labels(val), rule.parse_params(chosen), ctx)


def _bags(rng: np.random.Generator, n: int, m: int, size: int, prefix: str
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` bags of ``m`` uint8 noise crops; every other bag is positive, with 1-2 slices
    holding a bright square (the only difference between the classes)."""
    labels = np.zeros((n, m), dtype=np.int64)
    for b in range(1, n, 2):
        labels[b, rng.choice(m, int(rng.integers(1, 3)), replace=False)] = 1
    images = rng.normal(128, 20, (n * m, size, size))
    for i in np.flatnonzero(labels.ravel()):
        r, c = rng.integers(2, size - 8, 2)
        images[i, r:r + 6, c:c + 6] += 90
    groups = np.repeat([f"{prefix}{b:02d}" for b in range(n)], m)
    return np.clip(images, 0, 255).astype(np.uint8), labels.ravel(), groups


def _bag_problem(seed: int = 0, m: int = 6, size: int = 16) -> tuple[Split, Split, Split]:
    """Train / validation / test splits of 28 / 8 / 12 such bags, standardised on train."""
    rng = np.random.default_rng(seed)
    parts = [_bags(rng, n, m, size, prefix) for n, prefix in ((28, "a"), (8, "v"), (12, "t"))]
    mean, std = ImageRows.from_array(parts[0][0], parts[0][2]).pixel_stats()
    return tuple(Split(ImageRows.from_array(x, g).standardised(mean, std), y, g)
                 for x, y, g in parts)


@pytest.mark.parametrize("backend", conv_backends())
def test_conv_snn_mil_conforms_on_every_conv_backend(backend):
    from spikebench.errors import SpikebenchError

    try:
        get_backend(backend)
    except SpikebenchError as exc:
        pytest.skip(f"{backend} not installed: {exc}")
    out = check_rule("conv_snn_mil", params=SMALL | {"epochs": 1}, backends=[backend])
    assert np.all(np.isfinite(out[backend]))


def test_every_slice_of_a_patient_gets_its_bag_score_and_costs_include_attention():
    train, val, test = held_out_image_problem(0)
    model = _fit(train, val)
    prob = model.predict_proba(test.X)
    for g in np.unique(test.groups):
        assert np.unique(prob[test.groups == g]).size == 1
    assert len(np.unique(prob)) > 1  # but patients differ
    counters = model.activity(test.X)
    attention = 2 * 8 * 4 + 4  # V, U and w per slice (direct code: pixels are MACs too)
    assert counters["macs_per_sample"] > attention and counters["acs_per_sample"] > 0
    assert counters["synops_per_sample"] == pytest.approx(
        counters["macs_per_sample"] + counters["acs_per_sample"])
    assert model.info["bags"] == len(np.unique(train.groups))


def test_a_bag_label_carried_by_a_few_slices_is_learned():
    from sklearn.metrics import roc_auc_score

    train, val, test = _bag_problem(0)
    model = _fit(train, val, metric="patient_roc_auc", epochs=10, patience=10, lr=1e-2,
                 readout="membrane")
    prob = model.predict_proba(test.X)
    ids = np.unique(test.groups)
    score = [prob[test.groups == g][0] for g in ids]
    label = [test.y[test.groups == g].max() for g in ids]
    assert roc_auc_score(label, score) >= 0.85  # 6 positive, 6 negative held-out bags


def test_crops_are_read_in_bounded_chunks_and_training_bags_are_capped(monkeypatch):
    train, val, test = held_out_image_problem(0)
    reads: list[int] = []
    original = ImageRows.__getitem__

    def recording(self, key):
        out = original(self, key)
        reads.append(len(out))
        return out

    monkeypatch.setattr(ImageRows, "__getitem__", recording)
    _fit(train, val, epochs=1, bag_slices=4)
    largest_val_bag = max(np.unique(val.groups, return_counts=True)[1])
    assert reads and max(reads) <= max(4, largest_val_bag)  # training bags of <= 4 slices
    reads.clear()
    monkeypatch.setattr("spikebench.harness.rules.batches.CHUNK", 5)
    model = _fit(train, val, epochs=1)
    reads.clear()
    model.predict_proba(test.X)
    assert reads and max(reads) <= 5


def test_a_non_finite_loss_raises_diverged(monkeypatch):
    import torch

    from spikebench.harness.rules import conv_mil

    original = conv_mil.gated_attention

    def broken_head(hidden, attention):  # a head whose bag logit is NaN
        head = original(hidden, attention)
        torch.nn.init.constant_(head.classifier.bias, float("nan"))
        return head

    monkeypatch.setattr(conv_mil, "gated_attention", broken_head)
    train, val, _ = held_out_image_problem(0)
    with pytest.raises(DivergedError, match="non-finite loss"):
        _fit(train, val)


SPEC = """
[study]
name = "tiny-mil"
references = ["logistic_regression"]
eval_steps = [1.0]
[data]
source = "phantom"
cases = 8
shape = [48, 48]
images = true
crop = 16
crop_spacing_mm = 2.0
[grid]
backends = ["custom"]
rules = ["conv_snn_mil"]
[split]
scheme = "holdout"
repeats = 1
[search]
trials = 1
[space.conv_snn_mil]
epochs = 2
channels = 4
hidden = 8
attention = 4
steps = 4
encoding = "direct"
"""


@pytest.mark.slow
def test_conv_snn_mil_runs_in_a_tiny_image_study(tmp_path):
    from spikebench.cli import main

    spec_path = tmp_path / "tiny-mil.toml"
    spec_path.write_text(SPEC)
    out = tmp_path / "run"
    assert main(["study", "run", str(spec_path), "--out", str(out), "--quiet"]) == 0
    results = pd.read_parquet(out / "results.parquet")
    ok = results[results["status"] == "ok"]
    assert set(ok["rule"]) == {"conv_snn_mil", "logistic_regression"}
    assert dict(zip(ok["rule"], ok["track"], strict=False))["conv_snn_mil"] == "images"
    preds = pd.read_parquet(out / "predictions.parquet")
    mil = preds[preds["rule"] == "conv_snn_mil"]
    assert len(mil) and (mil.groupby("patient_id")["prob"].nunique() == 1).all()
