"""Active learning on crops with convolutional STDP filters: the conformance kit on every
backend, the patch-location trick against a direct convolution, filters that learn an
oriented edge, the label budget, and chunked reads of the crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikebench.backends import NetworkSpec, get_backend
from spikebench.harness.rules import FitContext, get_rule
from spikebench.harness.rules.active import init_hidden_weights, label_budget, on_off_spikes
from spikebench.harness.rules.base import hide_labels
from spikebench.harness.rules.conformance import (
    check_rule,
    held_out_image_problem,
    serving_backends,
)
from spikebench.harness.rules.conv_active import (
    ConvActiveParams,
    PatchGeometry,
    conv_hidden_counts,
    grid_sum,
    patch_spikes,
    train_filters,
    unfold_patches,
)
from spikebench.harness.space import default_values

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"filters": 6, "working_size": 8, "kernel": 3, "stride": 2, "steps": 8,
         "readout_epochs": 20}
INSTALLED = serving_backends(get_rule("conv_active"))  # backends listing "active"


def params(**over) -> ConvActiveParams:
    rule = get_rule("conv_active")
    return rule.parse_params(default_values(rule.search_space()) | over)


def test_conforms_on_every_backend():
    out = check_rule("conv_active", params=SMALL)
    assert set(out) == set(INSTALLED) and INSTALLED


@pytest.mark.parametrize("name", INSTALLED)
@pytest.mark.parametrize("kernel, stride", [(3, 1), (5, 2)])
def test_patch_locations_are_one_shared_convolution(name, kernel, stride):
    """The backend's dense layer on the unfolded patches gives, at the first step (fresh state:
    the charge is the input current), exactly a stride-σ conv2d of the ON/OFF maps with the
    weights seen as [F, 2C, k, k], at every location of every crop."""
    rng = np.random.default_rng(0)
    crops = rng.normal(0, 1, (3, 1, 12, 12)).astype(np.float32)
    p = params(working_size=12, kernel=kernel, stride=stride)
    geometry = PatchGeometry.of(crops.shape, p)
    n_filters = 5
    net = get_backend(name).build(NetworkSpec(sizes=(geometry.patch_inputs, n_filters)),
                                  dtype=torch.float64, seed=0)
    w = torch.as_tensor(rng.normal(0, 1, (n_filters, geometry.patch_inputs)))
    b = torch.as_tensor(rng.normal(0, 1, n_filters))
    net.set_weights([(w, b)])
    gen = torch.Generator().manual_seed(0)
    pre = patch_spikes(crops, geometry, p, 4, gen, "cpu", torch.float64)
    maps = on_off_spikes(torch.as_tensor(crops, dtype=torch.float64), "rate", 4,
                         float(p.gain), torch.Generator().manual_seed(0))  # same draws
    side = geometry.side
    assert pre.shape == (4, 3 * side * side, geometry.patch_inputs)
    with torch.no_grad():
        charge = net(pre).membrane[0].view(3, side, side, n_filters).permute(0, 3, 1, 2)
    conv = torch.nn.functional.conv2d(maps[0], w.view(n_filters, 2, kernel, kernel), b,
                                      stride=stride)
    torch.testing.assert_close(charge, conv, rtol=1e-12, atol=1e-12)


def test_grid_sum_adds_the_locations_of_each_region():
    counts = torch.arange(2 * 3 * 3 * 2, dtype=torch.float64).view(2, 3, 3, 2)
    out = grid_sum(counts, 2).view(2, 2, 2, 2)  # [B, F, r, c]; regions of 3: rows {0, 1}, {2}
    torch.testing.assert_close(out[1, 0, 0, 0], counts[1, :2, :2, 0].sum())
    torch.testing.assert_close(out[0, 1, 1, 0], counts[0, 2, :2, 1].sum())
    torch.testing.assert_close(out.sum((2, 3)), counts.sum((1, 2)))


def edge_crops(n: int, seed: int, size: int = 16) -> np.ndarray:
    """Crops holding one vertical dark-to-bright step edge at a random column, plus noise."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(4, size - 4, n)
    x = np.where(np.arange(size)[None, None, :] < cols[:, None, None], -1.5, 1.5)
    x = x + rng.normal(0, 0.3, (n, size, size))
    return x[:, None].astype(np.float32)


def mean_counts(net, patches: np.ndarray, p: dict, reps: int) -> torch.Tensor:
    """Spikes per presentation of each filter, ``patches`` ``[m, k, k]`` each shown ``reps``
    times (rate code, 20 steps)."""
    x = torch.as_tensor(patches, dtype=torch.float32).flatten(1).repeat(reps, 1)
    pre = on_off_spikes(x, "rate", 20, float(p.gain), torch.Generator().manual_seed(1))
    with torch.no_grad():
        return net(pre).spikes.sum(0).mean(0).double()


def test_stdp_filters_become_selective_to_a_repeated_edge():
    """After one STDP pass over crops with a vertical edge, the filter answering the edge best
    answers noise, a horizontal edge (the same ON/OFF spike statistics) and the reversed edge
    far less; the untrained filters answer all four alike. Measured (seed 0): edge 6.5 spikes,
    noise 0.2, horizontal 0.0, reversed 0.0; untrained best filter: 8.9, 8.0, 7.3, 6.9."""
    k, n_filters = 5, 8
    p = params(filters=n_filters, kernel=k, stride=1)
    crops = edge_crops(64, seed=0)
    geometry = PatchGeometry.of(crops.shape, p)
    edge = np.where(np.arange(k)[None, :] < k // 2, -1.5, 1.5) * np.ones((k, 1))
    noise = np.random.default_rng(1).normal(0, 1, (32, k, k))
    ratios = {}
    for trained in (False, True):
        net = get_backend("custom").build(
            NetworkSpec(sizes=(geometry.patch_inputs, n_filters), beta=float(p.beta)), seed=0)
        if trained:
            train_filters(net, crops, geometry, p, "cpu", seed=0)
        else:
            init_hidden_weights(net, p, "cpu", seed=0)
        on_edge = mean_counts(net, edge[None], p, reps=64)
        best = int(on_edge.argmax())
        others = [float(mean_counts(net, q, p, reps=r)[best])
                  for q, r in ((noise, 2), (edge.T[None], 64), (-edge[None], 64))]
        ratios[trained] = float(on_edge[best]) / max(max(others), 0.05)
        if trained:
            assert on_edge[best] > 3.0 and max(others) < 0.25 * float(on_edge[best])
    assert ratios[False] < 1.5 < 4.0 < ratios[True]


def test_labels_never_exceed_the_budget():
    train, val, _ = held_out_image_problem(1)
    for budget in (0.3, 20):
        p = params(**SMALL, budget=budget, batch_per_round=7)
        ctx = FitContext.for_validation(val, "pr_auc", get_backend("custom"), seed=0)
        model = get_rule("conv_active").fit(train, hide_labels(val), p, ctx)
        cap = label_budget(budget, len(train))
        assert 0 < model.info["labels_used"] <= model.info["labels_queried"] <= cap
        curves = model.info["curves"]
        for strategy in ("uncertainty", "random"):
            used = [c["labels_used"] for c in curves if c["strategy"] == strategy]
            assert used == sorted(used) and used[-1] == cap


class CountingRows:
    """Crop rows that record the largest number of rows one read asked for."""

    def __init__(self, X) -> None:
        self.X, self.most = X, 0
        self.shape, self.groups = X.shape, X.groups

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, index):
        self.most = max(self.most, len(np.atleast_1d(index)))
        return self.X[index]


def test_crops_are_read_in_chunks(monkeypatch):
    import spikebench.harness.rules.conv_active as conv_active

    train, _, _ = held_out_image_problem(0)
    p = params(**SMALL)
    geometry = PatchGeometry.of(train.X.shape, p)
    net = get_backend("custom").build(NetworkSpec(sizes=(geometry.patch_inputs, 6)), seed=0)
    rows = CountingRows(train.X)
    train_filters(net, rows, geometry, p, "cpu", seed=0)
    assert rows.most == p.stdp_batch
    monkeypatch.setattr(conv_active, "PATTERNS", 10 * geometry.side ** 2)
    counts, events = conv_hidden_counts(net, rows, geometry, p, 8, "cpu")
    assert rows.most == 10 and counts.shape == (len(train), 6 * 4) and events > 0


def test_unfold_orders_crops_then_locations():
    maps = torch.zeros(1, 2, 2, 4, 4)
    maps[0, 1, 1, 2, 3] = 1.0  # crop 1, OFF channel, row 2, column 3
    patterns = unfold_patches(maps, 2, 2)  # 4 locations per crop, 2·2² inputs per patch
    hit = torch.nonzero(patterns[0])
    assert hit.tolist() == [[4 + 3, 4 + 1]]  # crop 1's location (1, 1); channel 1, pixel (0, 1)
