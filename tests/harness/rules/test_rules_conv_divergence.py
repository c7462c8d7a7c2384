"""A user's image-track trial goes wrong upstream of the read-out (a NaN pixel, ``gain = nan``,
a weight of an early layer blown up to NaN): a NaN charge never crosses the threshold, so the
last layer and the loss may stay finite. The fit must stop with ``DivergedError`` saying what
went non-finite, not report a chance-level model; a normal fit must not."""

from __future__ import annotations

import numpy as np
import pytest

from spikebench.backends import get_backend
from spikebench.datasets.crops import ImageRows
from spikebench.harness.rules import DivergedError, FitContext, Split, get_rule
from spikebench.harness.rules.base import hide_labels
from spikebench.harness.rules.conformance import held_out_image_problem
from spikebench.harness.space import default_values

SMALL = {
    "conv_surrogate": {"epochs": 2, "channels": 4, "hidden": 8, "steps": 4,
                       "encoding": "direct"},
    "conv_snn_mil": {"epochs": 2, "channels": 4, "hidden": 8, "attention": 4, "steps": 4,
                     "encoding": "direct"},
    "conv_active": {"filters": 8, "steps": 12},
    "image_tempotron": {"epochs": 2, "grid": 4},
}
BACKPROP = ("conv_surrogate", "conv_snn_mil")


class NaNPixelRows(ImageRows):
    """Crop rows whose pixel (3, 3) reads as NaN (a corrupt crop cache, a bad scaling)."""

    def __getitem__(self, key):
        out = super().__getitem__(key)
        out[..., 3, 3] = np.nan
        return out


def _with_nan_pixel(split: Split) -> Split:
    rows = split.X
    bad = NaNPixelRows(rows.blocks, rows.block, rows.index, rows.groups, rows.size,
                       offset=rows.offset, scale=rows.scale)
    return Split(bad, split.y, split.groups)


@pytest.fixture(scope="module")
def problem() -> tuple[Split, Split, Split]:
    return held_out_image_problem(0)


def _fit(name: str, train: Split, val: Split, **params):
    rule = get_rule(name)
    chosen = default_values(rule.search_space()) | SMALL[name] | params
    ctx = FitContext.for_validation(val, "pr_auc", get_backend("custom"), seed=0)
    return rule.fit(train, hide_labels(val), rule.parse_params(chosen), ctx)


@pytest.mark.parametrize("name", BACKPROP)
def test_a_nan_pixel_stops_the_fit(problem, name):
    train, val, _ = problem
    with pytest.raises(DivergedError, match=r"non-finite input: .*NaN/inf pixels"):
        _fit(name, _with_nan_pixel(train), val)


@pytest.mark.parametrize("name", list(SMALL))
def test_a_nan_gain_stops_the_fit(problem, name):
    train, val, _ = problem
    with pytest.raises(DivergedError, match="non-finite hyper-parameter: gain = nan"):
        _fit(name, train, val, gain=float("nan"))


@pytest.mark.parametrize("name", BACKPROP)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_blown_up_first_layer_weight_stops_the_fit(problem, monkeypatch, name, bad):
    """Finite pixels and settings, one non-finite weight in the first convolution: its NaN
    gradients land in the weights at the first optimiser step."""
    import torch

    from spikebench.backends.base import ModuleBackend

    build = ModuleBackend.build_conv

    def blown_up(self, *args, **kwargs):
        net = build(self, *args, **kwargs)
        with torch.no_grad():
            net.layers[0].weight[0, 0, 1, 1] = bad
        return net

    monkeypatch.setattr(ModuleBackend, "build_conv", blown_up)
    train, val, _ = problem
    with pytest.raises(DivergedError, match=r"non-finite parameters .*epoch 0: .*layers\.0\."):
        _fit(name, train, val)


@pytest.mark.parametrize("name", list(SMALL))
def test_a_normal_fit_is_not_stopped(problem, name):
    train, val, test = problem
    model = _fit(name, train, val)
    assert np.all(np.isfinite(model.predict_proba(test.X)))
