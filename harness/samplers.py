"""Optuna samplers by name: the ``[search].sampler`` registry.

Each entry builds a sampler from ``(seed, multi_objective, startup)``; ``startup`` is the
number of random trials before a model-based sampler (TPE, GP) takes over
(:func:`startup_trials`). Add a sampler by adding an entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from spikebench.errors import SpecError

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler


def startup_trials(requested: int | None, trials: int) -> int:
    """Random start-up trials before a model-based sampler: ``requested``, else a third of
    ``trials`` capped at Optuna's default of 10 (with 10 trials Optuna's default would leave
    TPE nothing to do)."""
    return requested if requested is not None else max(1, min(10, trials // 3))


def _tpe(seed: int, multi: bool, startup: int) -> BaseSampler:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def _random(seed: int, multi: bool, startup: int) -> BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _gp(seed: int, multi: bool, startup: int) -> BaseSampler:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)


def _nsga2(seed: int, multi: bool, startup: int) -> BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed)


def _cmaes(seed: int, multi: bool, startup: int) -> BaseSampler:
    import optuna

    if multi:
        raise SpecError("[search].sampler = 'cmaes' is single-objective; use 'nsga2' or 'tpe'")
    try:
        import cmaes  # noqa: F401
    except ImportError:
        raise SpecError("[search].sampler = 'cmaes' needs `pip install cmaes`") from None
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


#: Sampler name -> ``factory(seed, multi_objective, startup_trials)``.
SAMPLERS: dict[str, Callable[[int, bool, int], BaseSampler]] = {
    "tpe": _tpe, "random": _random, "gp": _gp, "nsga2": _nsga2, "cmaes": _cmaes,
}


def make_sampler(name: str, seed: int, multi: bool, startup: int = 10) -> BaseSampler:
    """The sampler registered as ``name`` (:class:`SpecError` names the known ones)."""
    if name not in SAMPLERS:
        raise SpecError(f"[search].sampler: unknown sampler {name!r}; known: "
                        f"{', '.join(SAMPLERS)}")
    return SAMPLERS[name](seed, multi, startup)
