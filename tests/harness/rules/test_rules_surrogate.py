"""The surrogate-gradient rule: its TET loss, the encoders it reads, mixed time steps and the
divergence guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikebench.backends import get_backend
from spikebench.harness.encoding import encode, latency_times
from spikebench.harness.metrics import score
from spikebench.harness.rules import DivergedError, FitContext, Split, get_rule
from spikebench.harness.rules.surrogate import tet_loss
from spikebench.harness.space import default_values


def ctx_for(val, *args, **kwargs) -> FitContext:
    """A fit context scoring validation with balanced accuracy (labels bound by the harness
    side, as in a study)."""
    return FitContext.for_validation(val, "balanced_accuracy", *args, **kwargs)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def easy_problem(n: int = 200, seed: int = 0) -> tuple[Split, Split]:
    rng = np.random.default_rng(seed)

    def make(m: int) -> Split:
        y = (rng.random(m) < 0.4).astype(np.int64)
        X = rng.normal(0, 1, (m, 6)).astype(np.float32)
        X[:, :3] += 1.5 * y[:, None]
        return Split(X, y, rng.integers(0, 10, m))

    return make(n), make(n // 2)


def test_tet_loss_equals_the_formula_on_a_hand_made_tensor():
    """(1-λ) mean_t CE(H[t], y) + λ mean_t MSE(H[t], φ) with T = 2, B = 2, C = 2."""
    h = torch.tensor([[[2.0, 0.0], [0.0, 1.0]],
                      [[1.0, 1.0], [-1.0, 3.0]]])  # [T, B, C]
    y = torch.tensor([0, 1])
    lam, phi = 0.25, 1.0

    def ce(logits, label):  # -log softmax(logits)[label]
        return -(logits[label] - np.log(np.exp(logits).sum()))

    hn = h.numpy().astype(np.float64)
    ce_mean = np.mean([np.mean([ce(hn[t, b], int(y[b])) for b in range(2)]) for t in range(2)])
    mse = np.mean((hn - phi) ** 2)
    expected = (1 - lam) * ce_mean + lam * mse
    assert tet_loss(h, y, lam=lam, phi=phi).item() == pytest.approx(expected, rel=1e-6)
    # class weights enter the cross-entropy as torch's weighted mean
    w = torch.tensor([1.0, 3.0])
    ce_w = np.mean([sum(float(w[y[b]]) * ce(hn[t, b], int(y[b])) for b in range(2))
                    / float(w[y].sum()) for t in range(2)])
    assert tet_loss(h, y, lam=lam, phi=phi, weight=w).item() == pytest.approx(
        (1 - lam) * ce_w + lam * mse, rel=1e-6)


def test_each_encoding_has_the_documented_shape_and_values():
    x = torch.tensor([[-2.0, 0.0, 3.0], [1.0, -1.0, 0.5]])
    direct = encode(x, "direct", 4, gain=2.0)
    assert direct.shape == (4, 2, 3)
    torch.testing.assert_close(direct, (2.0 * x).expand(4, 2, 3))

    gen = torch.Generator().manual_seed(0)
    rate = encode(x.expand(2000, 2, 3).reshape(4000, 3), "rate", 50, generator=gen)
    assert rate.shape == (50, 4000, 3) and set(rate.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(rate.mean((0, 1)).reshape(1, 3).expand(1, 3),
                               torch.sigmoid(x).mean(0, keepdim=True), atol=0.03, rtol=0)
    again = encode(x, "rate", 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again, encode(x, "rate", 5,
                                             generator=torch.Generator().manual_seed(1)))

    lat = encode(x, "latency", 10)
    assert lat.shape == (10, 2, 3)
    torch.testing.assert_close(lat.sum(0), torch.ones(2, 3))  # exactly one spike per feature
    t = latency_times(x, 10)
    torch.testing.assert_close(lat.argmax(0).float(), t)
    torch.testing.assert_close(t, torch.round((1 - torch.sigmoid(x)) * 9))
    assert t[0, 2] < t[0, 1] < t[0, 0]  # strong features fire early
    with pytest.raises(ValueError, match="unknown encoding"):
        encode(x, "phase", 4)


@pytest.mark.parametrize("encoding", ["direct", "rate", "latency"])
def test_fit_with_mixed_steps_works_at_several_time_steps(encoding):
    train, val = easy_problem()
    rule = get_rule("surrogate")
    params = default_values(rule.search_space()) | {
        "encoding": encoding, "mixed_steps": True, "steps": 8, "hidden": 16, "epochs": 6,
        "loss": "membrane", "lr": 1e-2}
    model = rule.fit(train, val, rule.parse_params(params),
                     ctx_for(val, backend=get_backend("custom"), seed=0))
    assert model.train_steps == 8
    for steps in (4, 8, 16):
        prob = model.predict_proba(val.X, steps=steps)
        assert prob.shape == (len(val),) and np.all((prob >= 0) & (prob <= 1))
        assert score("roc_auc", val.y, prob) > 0.6
    act = model.activity(val.X)
    assert act["synops_per_sample"] > 0


@pytest.mark.parametrize("loss", ["count", "tet"])
def test_every_loss_trains(loss):
    train, val = easy_problem()
    rule = get_rule("surrogate")
    params = default_values(rule.search_space()) | {
        "encoding": "direct", "steps": 6, "hidden": 16, "epochs": 5, "loss": loss, "lr": 1e-2}
    model = rule.fit(train, val, rule.parse_params(params),
                     ctx_for(val, backend=get_backend("custom"), seed=0))
    assert score("roc_auc", val.y, model.predict_proba(val.X)) > 0.7


def test_a_nan_input_raises_diverged_error():
    train, val = easy_problem(n=64)
    train.X[3, 1] = np.nan
    rule = get_rule("surrogate")
    params = default_values(rule.search_space()) | {
        "encoding": "direct", "steps": 4, "hidden": 8, "epochs": 2}
    with pytest.raises(DivergedError, match="non-finite"):
        rule.fit(train, val, rule.parse_params(params),
                 ctx_for(val, backend=get_backend("custom"), seed=0))
