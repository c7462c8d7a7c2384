"""The learning-rule conformance kit: run ``check_rule`` in a rule plug-in's tests.

A rule conforms when, on a small problem whose train, validation and test patients are
disjoint (feature rows, or for ``inputs = "images"`` lazy 16 × 16 crop rows), and on every
installed backend that provides the capabilities it needs (or with no backend, for a rule
that needs none), it:

1. declares a search space of ``spikebench.harness.space`` parameters whose every default
   value lies in the rule's ``domains``, and a
   ``params_type`` whose fields are exactly the search
   space's names, each default a point of its range (skipped for free-form ``dict``
   parameters); the kit fits with ``parse_params`` of the
   chosen values, as the harness does;
2. fits with the validation labels hidden (``val.y`` is all ``-1``: it may use validation
   labels only through ``ctx.score_validation``, i.e. for early stopping and selection);
3. returns ``P(lesion)`` per row, finite and in [0, 1], for the training T and other T;
4. is deterministic for a seed (two fits, the same probabilities);
5. reports its cost counters (``spikes_per_sample``, ``acs_per_sample``, ``macs_per_sample``,
   ``synops_per_sample``), finite and non-negative where they apply;
6. says how many epochs it ran and how many labels it used (``model.info``).

Every failed check raises ``AssertionError`` naming the rule, the backend and the check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spikebench.harness.rules.base import (
    COUNTERS,
    FitContext,
    Rule,
    Split,
    hide_labels,
)


def held_out_problem(seed: int = 0, n_patients: int = 18, features: int = 8
                     ) -> tuple[Split, Split, Split]:
    """Train / validation / test splits of disjoint synthetic patients (10 / 4 / 4), about a
    quarter of the slices positive, standardised on train."""
    rng = np.random.default_rng(seed)
    rows, labels, groups = [], [], []
    for patient in range(n_patients):
        m = int(rng.integers(8, 16))
        y = (rng.random(m) < 0.25).astype(np.int64)
        y[0] = patient % 2  # every split holds both classes
        X = rng.normal(0, 1, (m, features)) + rng.normal(0, 0.3, features)
        X[:, :3] += 1.5 * y[:, None]
        rows.append(X)
        labels.append(y)
        groups.append(np.full(m, f"p{patient:02d}"))
    X, y, g = np.concatenate(rows), np.concatenate(labels), np.concatenate(groups)
    ids = np.array([f"p{i:02d}" for i in range(n_patients)])
    parts = [np.isin(g, ids[:10]), np.isin(g, ids[10:14]), np.isin(g, ids[14:])]
    mu, sd = X[parts[0]].mean(0), X[parts[0]].std(0)
    train, val, test = (Split(((X[p] - mu) / sd).astype(np.float32), y[p], g[p])
                        for p in parts)
    return train, val, test


def held_out_image_problem(seed: int = 0, n_patients: int = 18, size: int = 16
                           ) -> tuple[Split, Split, Split]:
    """The image variant of ``held_out_problem``: the same disjoint 10 / 4 / 4 patients
    (8-15 slices each, about a quarter positive), each slice a ``size × size`` crop of noisy
    "liver" whose positive slices hold a dark disc at a random place; ``X`` is lazy crop rows
    (``ImageRows``, with patient ids), standardised with the
    training pixels' mean and standard deviation."""
    from spikebench.datasets.crops import ImageRows

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels, groups = [], [], []
    for patient in range(n_patients):
        m = int(rng.integers(8, 16))
        y = (rng.random(m) < 0.25).astype(np.int64)
        y[0] = patient % 2
        base = rng.uniform(120, 160)
        for label in y:
            img = base + rng.normal(0, 12, (size, size))
            if label:
                cy, cx = rng.uniform(size * 0.25, size * 0.75, 2)
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < (size * rng.uniform(0.12, 0.22)) ** 2] -= 70
            images.append(np.clip(img, 0, 255).astype(np.uint8))
        labels.append(y)
        groups.append(np.full(m, f"p{patient:02d}"))
    X, y, g = np.stack(images), np.concatenate(labels), np.concatenate(groups)
    ids = np.array([f"p{i:02d}" for i in range(n_patients)])
    parts = [np.isin(g, ids[:10]), np.isin(g, ids[10:14]), np.isin(g, ids[14:])]
    rows = ImageRows.from_array(X, list(g))
    mean, std = rows.rows(parts[0]).pixel_stats()
    train, val, test = (Split.of_images(rows.rows(p).standardised(mean, std), y[p], g[p])
                        for p in parts)
    return train, val, test


def serving_backends(rule: Rule) -> list[str | None]:
    """Installed backends that serve ``rule`` (``spikebench.harness.rules.serving``), or
    ``[None]`` for a rule that needs no backend."""
    from spikebench.harness.rules.serving import serving_backends as serving

    if not rule.needs:
        return [None]
    return list(serving(rule))


def check_rule(rule: Rule | type[Rule] | str, *, params: Mapping[str, Any] | None = None,
               backends: list[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Prove a learning rule keeps the contract: run the checks of the module docstring.

    The rule is fitted on a small held-out problem, with the validation labels hidden, on
    every backend that serves it: probabilities in [0, 1] for every row, determinism for a
    seed, cost counters, ``info`` entries, typed parameters and domains.

    Parameters
    ----------
    rule : Rule or type or str
        An instance, a class or a registered name.
    params : Mapping, optional
        Updates of the default parameters (small values keep the kit fast).
    backends : list of str, optional
        Backends to check on (default: every installed backend that serves the rule).
    seed : int, default 0
        Seed of the fits.

    Returns
    -------
    dict of str to numpy.ndarray
        Backend name (``"None"`` for a rule that needs no backend) → the test
        probabilities, for further checks.

    Raises
    ------
    AssertionError
        Naming the rule, the backend and the broken promise.

    Examples
    --------
    >>> from spikebench.harness.rules.conformance import check_rule
    >>> out = check_rule("logistic_regression")
    >>> list(out), out["None"].shape
    (['None'], (55,))
    """
    from spikebench.harness.space import Param, default_values

    rule = _instance(rule)
    space = rule.search_space()
    assert space and all(isinstance(p, Param) for p in space.values()), (
        f"{rule.name}: search_space() must map names to spikebench.harness.space parameters")
    _check_domains(rule, space)
    _check_params_type(rule, space)
    chosen = rule.parse_params(default_values(space) | dict(params or {}))
    targets = backends if backends is not None else serving_backends(rule)
    assert targets, f"{rule.name}: no installed backend serves this rule"
    out = {}
    for backend in targets:
        out[str(backend)] = _check_on(rule, backend, chosen, seed)
    return out


def _check_domains(rule: Rule, space: Mapping[str, Any]) -> None:
    """Every value the default search space can take lies in the rule's declared domains (a
    default range the spec could not even ask for is a bug in the rule)."""
    from spikebench.errors import SpecError
    from spikebench.harness.space import check_override

    domains = rule.domains()
    unknown = sorted(set(domains) - set(space))
    assert not unknown, f"{rule.name}: domains() names parameters not in search_space(): {unknown}"
    for name, param in space.items():
        try:
            check_override(f"{rule.name}.search_space()[{name!r}]", name, param, param,
                           domains.get(name))
        except SpecError as exc:
            raise AssertionError(f"{rule.name}: its default is outside its domain: {exc}") from None


def _check_params_type(rule: Rule, space: Mapping[str, Any]) -> None:
    """The parameters dataclass is frozen, has one field per search-space name, and its
    defaults are points of the search space (a fixed parameter's default is its value)."""
    import dataclasses

    from spikebench.harness.rules.params import coerce, defaults, field_types, is_free_form
    from spikebench.harness.space import Categorical, Fixed

    ptype = rule.params_type
    if is_free_form(ptype):
        return
    fields, types = defaults(ptype), field_types(ptype)
    assert set(fields) == set(space), (
        f"{rule.name}: params_type {ptype.__name__} fields must equal the search_space() "
        f"names; fields only: {sorted(set(fields) - set(space))}, "
        f"search_space() only: {sorted(set(space) - set(fields))}")
    assert ptype.__dataclass_params__.frozen, (
        f"{rule.name}: params_type {ptype.__name__} must be a frozen dataclass")
    for name, param in space.items():
        default = fields[name]
        assert default is not dataclasses.MISSING, (
            f"{rule.name}: {ptype.__name__}.{name} has no default")
        if isinstance(param, Fixed):
            ok = coerce(rule.name, name, types[name], param.value) == default
        elif isinstance(param, Categorical):
            ok = default in param.choices
        else:
            ok = param.low <= default <= param.high
        assert ok, (f"{rule.name}: the default {ptype.__name__}.{name} = {default!r} is not a "
                    f"point of its search space {param}")


def _instance(rule: Rule | type[Rule] | str) -> Rule:
    if isinstance(rule, str):
        from spikebench.harness.rules import get_rule

        return get_rule(rule)
    return rule() if isinstance(rule, type) else rule


def _fit(rule: Rule, backend: str | None, params: Any, seed: int,
         train: Split, val: Split) -> tuple[Any, int]:
    from spikebench.backends import get_backend

    calls = {"n": 0}
    ctx = FitContext.for_validation(val, "pr_auc", get_backend(backend) if backend else None,
                                    seed=seed)
    scorer = ctx.validation
    assert scorer is not None  # for_validation binds it

    def counted(prob: np.ndarray, metric: str | None = None) -> float:
        calls["n"] += 1
        return scorer(prob, metric)

    ctx.validation = counted
    model = rule.fit(train, hide_labels(val), params, ctx)
    return model, calls["n"]


def _check_on(rule: Rule, backend: str | None, params: Any, seed: int) -> np.ndarray:
    where = f"{rule.name} on {backend or 'no backend'}"
    problem = held_out_image_problem if rule.inputs == "images" else held_out_problem
    train, val, test = problem(seed)
    model, scored = _fit(rule, backend, params, seed, train, val)
    prob = np.asarray(model.predict_proba(test.X), dtype=np.float64)
    assert prob.shape == (len(test),), f"{where}: predict_proba must return one value per row"
    assert np.all(np.isfinite(prob)) and np.all((prob >= 0) & (prob <= 1)), (
        f"{where}: probabilities must be finite and in [0, 1]")
    t = int(getattr(model, "train_steps", 1))
    other = np.asarray(model.predict_proba(test.X, steps=max(1, 2 * t)))
    assert other.shape == prob.shape and np.all((other >= 0) & (other <= 1)), (
        f"{where}: predict_proba(steps=2T) must work too")
    again, _ = _fit(rule, backend, params, seed, train, val)
    np.testing.assert_allclose(again.predict_proba(test.X), prob, rtol=0, atol=1e-12,
                               err_msg=f"{where}: not deterministic for a seed")
    counters = model.activity(test.X)
    missing = [c for c in COUNTERS if c not in counters]
    assert not missing, f"{where}: activity() lacks {missing}"
    for name in COUNTERS:
        value = float(counters[name])
        assert np.isnan(value) or value >= 0, f"{where}: {name} = {value} (must be >= 0 or NaN)"
    if rule.kind == "snn":
        assert np.isfinite(counters["acs_per_sample"]), f"{where}: a spiking rule counts ACs"
    info = getattr(model, "info", {})
    assert "epochs" in info, (f"{where}: model.info['epochs'] missing (the epochs run, or None "
                              "for a rule that does not train in epochs)")
    epochs = info["epochs"]
    assert epochs is None or int(epochs) >= 1, f"{where}: model.info['epochs'] = {epochs!r}"
    assert int(info.get("labels_used", 0)) >= 1, f"{where}: model.info['labels_used'] missing"
    assert scored >= 1, f"{where}: never scored validation (no early stopping or selection)"
    return prob
