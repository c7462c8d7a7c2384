"""The image Tempotron: it conforms on every backend that lists "tempotron", its pooled
front-end equals torch's average pooling and reads lazy crops chunk by chunk, a grid that does
not divide the crop is refused by name, it learns a pooled pattern that separates the classes,
and the planner serves or skips it like the other image rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spec_text import tiny_spec

from spikebench.backends import available_backends, get_backend
from spikebench.backends.capabilities import Capability
from spikebench.errors import RuleError, SpikebenchError
from spikebench.harness.metrics import score
from spikebench.harness.rules import FitContext, Split, get_rule
from spikebench.harness.rules.base import hide_labels
from spikebench.harness.rules.batches import CHUNK
from spikebench.harness.rules.conformance import check_rule, held_out_image_problem
from spikebench.harness.rules.image_tempotron import (
    ImageTempotron,
    check_grid,
    pool_grid,
    pooled_rows,
)
from spikebench.harness.space import default_values

FAST = {"epochs": 3, "steps": 16}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tempotron_backends() -> list[str]:
    """Installed backends that list the "tempotron" rule."""
    names = []
    for name in available_backends():
        try:
            backend = get_backend(name)
        except (SpikebenchError, ImportError):
            continue
        if Capability.TEMPOTRON in backend.capabilities:
            names.append(name)
    return names


def test_registered_as_an_image_rule_needing_the_tempotron():
    rule = get_rule("image_tempotron")
    assert isinstance(rule, ImageTempotron)
    assert rule.inputs == "images" and rule.needs == {Capability.TEMPOTRON} and rule.summary
    assert default_values(rule.search_space())["grid"] == 8


def test_conforms_on_every_backend_building_the_tempotron():
    out = check_rule("image_tempotron", params=FAST)
    assert "custom" in out and set(out) == set(tempotron_backends())


def test_pooling_equals_torch_average_pooling():
    crops = np.random.default_rng(0).normal(size=(5, 2, 16, 16)).astype(np.float32)
    for grid in (1, 2, 4, 8, 16):
        ref = torch.nn.functional.avg_pool2d(torch.as_tensor(crops), 16 // grid)
        np.testing.assert_allclose(pool_grid(crops, grid), ref.reshape(5, -1).numpy(),
                                   rtol=0, atol=1e-6)


def test_lazy_rows_are_pooled_chunk_by_chunk_like_the_whole_array():
    train, _, _ = held_out_image_problem(0)
    whole = pool_grid(np.asarray(train.X), 4)
    np.testing.assert_array_equal(pooled_rows(train.X, 4, chunk=7), whole)
    assert pooled_rows(train.X.rows(np.zeros(len(train), bool)), 4).shape == (0, 16)


@pytest.mark.parametrize("grid", [3, 5, 0])
def test_a_grid_that_does_not_divide_the_crop_is_refused_by_name(grid):
    with pytest.raises(RuleError, match=rf"grid = {grid} does not divide the crop size 16"):
        check_grid(grid, 16)
    train, val, _ = held_out_image_problem(0)
    params = default_values(ImageTempotron().search_space()) | FAST | {"grid": grid}
    ctx = FitContext.for_validation(val, "pr_auc", get_backend("custom"))
    with pytest.raises(RuleError, match=r"\[space.image_tempotron\] to one of \[1, 2, 4, 8, 16\]"):
        ImageTempotron().fit(train, hide_labels(val), ImageTempotron.parse_params(params), ctx)


class CountingRows:
    """Crop rows that record the largest read (to prove inference never reads them whole)."""

    def __init__(self, rows) -> None:
        self.rows, self.largest = rows, 0
        self.shape = rows.shape

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        out = self.rows[key]
        self.largest = max(self.largest, len(out))
        return out


def separable_problem(seed: int = 0, size: int = 16) -> tuple[Split, Split, Split]:
    """Disjoint 12 / 4 / 6 patients of noisy crops; positives (about 30 %) are darker in the
    top-left quadrant, a pattern the 4 x 4 pooled code separates."""
    from spikebench.datasets.crops import ImageRows

    rng = np.random.default_rng(seed)
    images, labels, groups = [], [], []
    for patient in range(22):
        m = int(rng.integers(10, 16))
        y = (rng.random(m) < 0.3).astype(np.int64)
        y[0] = patient % 2
        for label in y:
            img = rng.uniform(120, 160) + rng.normal(0, 25, (size, size))
            if label:
                img[: size // 2, : size // 2] -= 40
            images.append(np.clip(img, 0, 255).astype(np.uint8))
        labels.append(y), groups.append(np.full(m, f"p{patient:02d}"))
    X, y, g = np.stack(images), np.concatenate(labels), np.concatenate(groups)
    ids = np.array([f"p{i:02d}" for i in range(22)])
    parts = [np.isin(g, ids[:12]), np.isin(g, ids[12:16]), np.isin(g, ids[16:])]
    rows = ImageRows.from_array(X, g)
    mean, std = rows.rows(parts[0]).pixel_stats()
    return tuple(Split(rows.rows(p).standardised(mean, std), y[p], g[p]) for p in parts)


def test_learns_a_separating_pooled_pattern_on_held_out_patients():
    train, val, test = separable_problem()
    assert not set(train.groups) & set(test.groups)
    rule = ImageTempotron()
    params = default_values(rule.search_space()) | {"grid": 4, "epochs": 15}
    ctx = FitContext.for_validation(val, "balanced_accuracy", get_backend("custom"), seed=0)
    model = rule.fit(train, hide_labels(val), rule.parse_params(params), ctx)
    prob = model.predict_proba(test.X)
    assert score("balanced_accuracy", test.y, prob, test.groups) > 0.8
    assert model.info["grid"] == 4 and model.info["afferent_values"] == 16

    # inference reads lazy crops a chunk at a time and agrees with the unchunked Tempotron
    many = train.X.rows(np.arange(3 * CHUNK) % len(train))
    counting = CountingRows(many)
    chunked = model.decision(counting)
    assert counting.largest <= CHUNK < len(many)
    z = model.code.standardise(pool_grid(np.asarray(many), 4))
    np.testing.assert_allclose(chunked, model.tempotron.decision(z), rtol=0, atol=1e-5)

    act = model.activity(test.X)
    assert act["pool_adds_per_sample"] == 16 * 16 - 4 * 4  # C (S² − g²), not synaptic events
    assert act["macs_per_sample"] == 0 and act["synops_per_sample"] == act["acs_per_sample"]
    assert 0 < act["acs_per_sample"] <= 16 * int(params["population"]) * 2 * int(
        params["neurons_per_class"])


def image_spec(images: bool, backends: list[str]) -> str:
    """A phantom study of image_tempotron beside the feature surrogate rule on ``backends``
    (crops or not)."""
    return tiny_spec(
        "unused", study={"name": "tiny-image-tempotron", "references": []},
        data={"source": "phantom", "path": None, "cases": 8, "shape": [48, 48],
              "images": images, "crop": 16, "crop_spacing_mm": 2.0},
        grid={"backends": backends, "rules": ["surrogate", "image_tempotron"]})


@pytest.mark.parametrize("images", [True, False])
def test_planner_serves_it_on_tempotron_backends_and_skips_it_without_images(tmp_path, images):
    from spikebench.harness.plan import plan_cells
    from spikebench.harness.spec import load_spec

    backends = available_backends()
    path = tmp_path / "s.toml"
    path.write_text(image_spec(images, backends))
    every = plan_cells(load_spec(path), [], device="cpu")
    plans = {p.backend: p for p in every if p.rule == "image_tempotron"}
    assert all(p.skip_reason == "" for p in every if p.rule == "surrogate")
    serving = set(tempotron_backends())
    assert serving
    for name in backends:
        plan = plans[name]
        assert plan.rule == "image_tempotron" and plan.track == "images"
        if not images:
            assert "images = true" in plan.skip_reason
        elif name in serving:
            assert plan.skip_reason == ""
        else:
            assert plan.skip_reason  # e.g. "backend 'torchscript' does not support rule ..."
