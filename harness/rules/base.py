"""The learning-rule contract: train a backend's network on a split, return a probability model.

A rule is a plug-in (entry-point group ``spikebench.rules``) with one abstract method,
:meth:`Rule.fit`. The harness gives it standardised train and validation arrays (the sealed test
split never reaches a rule while tuning), the chosen hyperparameters and a :class:`FitContext`;
the rule returns a :class:`TrainedModel` whose :meth:`~TrainedModel.predict_proba` gives
``P(lesion)`` per slice, at the training time steps or any other ``steps``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from spikebench.errors import RuleError

if TYPE_CHECKING:
    import torch

    from spikebench.backends.base import Backend, NetworkSpec
    from spikebench.harness.space import Param


class DivergedError(RuleError):
    """Training produced a NaN/inf loss or an exploding membrane: the trial is pruned with this
    message as its recorded reason, and the study goes on."""


@dataclasses.dataclass
class Split:
    """One split's arrays: features ``X`` ``[n, F]`` (float32, standardised with train
    statistics), labels ``y`` ``[n]`` in {0, 1}, patient ``groups`` ``[n]``."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray) -> Split:
        return Split(self.X[index], self.y[index], self.groups[index])


@dataclasses.dataclass
class FitContext:
    """What the harness lends a rule for one fit.

    ``report(epoch, value)`` passes the validation metric per epoch to Optuna (it raises
    ``optuna.TrialPruned`` when the pruner says stop); ``metric(y, prob)`` is the objective the
    study maximises, for early stopping on the same quantity.
    """

    backend: Backend
    device: str | torch.device = "cpu"
    seed: int = 0
    report: Callable[[int, float], None] | None = None
    metric: Callable[[np.ndarray, np.ndarray], float] | None = None
    progress: bool = False

    def report_epoch(self, epoch: int, value: float) -> None:
        if self.report is not None:
            self.report(epoch, value)


class TrainedModel(abc.ABC):
    """A fitted model: probabilities per slice plus the cost figures the report shows."""

    #: Time steps the model was trained with.
    train_steps: int = 1
    #: Free-form facts about the fit: ``epochs``, ``labels_used``, ``curves`` (active learning:
    #: list of {strategy, labels_used, val_balanced_accuracy, val_pr_auc}) ...
    info: dict[str, Any]

    @abc.abstractmethod
    def predict_proba(self, X: np.ndarray, *, steps: int | None = None) -> np.ndarray:
        """``P(lesion)`` per row of ``X`` (``[n]`` floats in [0, 1]) using ``steps`` time steps
        (default: :attr:`train_steps`)."""

    def activity(self, X: np.ndarray, *, steps: int | None = None) -> dict[str, float]:
        """``spikes_per_sample`` and ``synops_per_sample`` on ``X`` (NaN when not spiking)."""
        return {"spikes_per_sample": float("nan"), "synops_per_sample": float("nan")}

    def export(
        self,
    ) -> tuple[NetworkSpec, Sequence[tuple[torch.Tensor, torch.Tensor | None]]] | None:
        """The trained feed-forward LIF network as (spec, weights), if it is one (for NIR)."""
        return None


class Rule(abc.ABC):
    """A learning rule. Subclasses set :attr:`name`, :attr:`summary` and implement
    :meth:`search_space` and :meth:`fit`. The equation the rule implements belongs in the
    subclass's docstring."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""

    @abc.abstractmethod
    def search_space(self) -> dict[str, Param]:
        """Default hyperparameters (ranges the spec's ``[search.<rule>]`` may override)."""

    @abc.abstractmethod
    def fit(self, train: Split, val: Split, params: Mapping[str, Any], ctx: FitContext
            ) -> TrainedModel:
        """Train on ``train``, early-stop on ``val``; never sees the test split."""


def class_weights(y: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights of classes 0 and 1 (balanced loss on imbalanced slices)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=2).astype(np.float64)
    counts[counts == 0] = 1.0
    return (counts.sum() / (2.0 * counts)).astype(np.float32)
