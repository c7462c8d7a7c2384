"""Optuna pruners by name: the ``[search].pruner`` registry, with documented settings.

Each pruner's settings are a small pydantic model; a spec overrides them in
``[search].pruner_options`` (unknown keys and out-of-range values are errors naming the key).
Defaults:

- ``median`` — prune a trial whose epoch score falls below the median of earlier trials at the
  same epoch, once ``n_startup_trials = 4`` trials have finished and after
  ``n_warmup_steps = 3`` epochs (early epochs are too noisy to judge).
- ``hyperband`` — successive halving over epochs from ``min_resource = 2`` epochs.
- ``none`` — never prune.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spikebench.errors import SpecError

if TYPE_CHECKING:
    from optuna.pruners import BasePruner


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class MedianOptions(_Options):
    n_startup_trials: int = Field(4, ge=0, le=10_000)
    n_warmup_steps: int = Field(3, ge=0, le=10_000)


class HyperbandOptions(_Options):
    min_resource: int = Field(2, ge=1, le=10_000)


class NoOptions(_Options):
    pass


def _median(o: MedianOptions) -> BasePruner:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=o.n_startup_trials,
                                       n_warmup_steps=o.n_warmup_steps)


def _hyperband(o: HyperbandOptions) -> BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=o.min_resource)


def _none(o: NoOptions) -> BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


#: Pruner name -> (settings model, factory).
PRUNERS: dict[str, tuple[type[_Options], Callable[[Any], BasePruner]]] = {
    "median": (MedianOptions, _median),
    "hyperband": (HyperbandOptions, _hyperband),
    "none": (NoOptions, _none),
}


def pruner_options(name: str, raw: dict[str, Any]) -> _Options:
    """Validate ``[search].pruner_options`` for pruner ``name``."""
    if name not in PRUNERS:
        raise SpecError(f"[search].pruner: unknown pruner {name!r}; known: {', '.join(PRUNERS)}")
    try:
        return PRUNERS[name][0].model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise SpecError(f"[search].pruner_options.{key}: {err['msg']} for pruner {name!r} "
                        f"(got {err.get('input')!r})") from None


def make_pruner(name: str, raw: dict[str, Any] | None = None) -> BasePruner:
    """The pruner registered as ``name`` with ``raw`` settings over its defaults."""
    options = pruner_options(name, raw or {})
    return PRUNERS[name][1](options)
