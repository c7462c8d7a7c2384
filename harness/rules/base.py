"""The learning-rule contract: train a backend's network on a split, return a probability model.

A rule is a plug-in (entry-point group ``spikebench.rules``) with one abstract method,
:meth:`Rule.fit`. The harness gives it standardised train and validation arrays (the sealed test
split never reaches a rule while tuning), the chosen hyperparameters as the rule's own typed
object (:attr:`Rule.params_type`, built by :meth:`Rule.parse_params`:
:mod:`spikebench.harness.rules.params`) and a :class:`FitContext`; the rule returns a
:class:`TrainedModel` whose :meth:`~TrainedModel.predict_proba` gives ``P(lesion)`` per slice,
at the training time steps or any other ``steps``.

A rule in full (the update equation it implements in its docstring, as every rule states)::

    @dataclasses.dataclass(frozen=True)
    class DeltaParams:              # one field per search_space() name, typed, with a default
        lr: float = 0.01
        epochs: int = 20

    class Delta(Rule[DeltaParams]):
        \"\"\"Logistic unit: w ← w + lr Σ_n (y_n − σ(wᵀx_n)) x_n, once per epoch.\"\"\"

        name = "delta"
        needs = frozenset()         # a reference: no spiking backend
        kind = "reference"
        params_type = DeltaParams

        def search_space(self):
            return {"lr": Float(1e-3, 1e-1, log=True), "epochs": Fixed(20)}

        def fit(self, train, val, params: DeltaParams, ctx):
            ...                     # params.lr is a float, params.epochs an int
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

import numpy as np

from spikebench.backends.capabilities import Capability, capability_set
from spikebench.errors import RuleError
from spikebench.harness.rules.params import parse_params
from spikebench.harness.space import Domain, builtin_domains

if TYPE_CHECKING:
    import torch

    from spikebench.backends.base import Backend, NetworkSpec
    from spikebench.datasets.crops import ImageRows
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

    @classmethod
    def of_images(cls, rows: ImageRows, y: np.ndarray, groups: np.ndarray) -> Split:
        """A split of the image track: ``X`` is lazy crop rows
        (:class:`~spikebench.datasets.crops.ImageRows`: ``len``, integer-array indexing and
        :func:`~spikebench.harness.rules.batches.read_rows`), which rules with
        ``inputs = "images"`` read; ``X`` is annotated as an array for the feature rules,
        the common case, so this one constructor says where rows stand in for it."""
        return cls(cast(np.ndarray, rows), y, groups)


@dataclasses.dataclass
class FitContext:
    """What the harness lends a rule for one fit.

    The validation split a rule receives carries no labels (``val.y`` is all ``-1``): the only
    way to use validation labels is :meth:`score_validation`, for early stopping and model
    selection on the study's objective. ``report(epoch, value)`` passes the per-epoch score to
    Optuna (it raises ``optuna.TrialPruned`` when the pruner says stop). ``backend`` is None for
    rules that need no spiking backend (the non-spiking references).
    """

    backend: Backend | None
    device: str | torch.device = "cpu"
    seed: int = 0
    report: Callable[[int, float], None] | None = None
    #: ``validation(prob, metric)`` scores ``P(lesion)`` of the validation rows with the study
    #: metric (``metric=None``) or a named one; bound by the harness to the hidden labels.
    validation: Callable[[np.ndarray, str | None], float] | None = None

    @classmethod
    def for_validation(cls, val: Split, metric: str, backend: Backend | None = None,
                       **kwargs: Any) -> FitContext:
        """A context whose validation scorer reads ``val``'s labels with ``metric`` — how to
        call a rule's ``fit`` directly (a notebook, a test); pass ``hide_labels(val)`` as the
        rule's validation split to be sure it never reads them itself."""
        return cls(backend=backend, validation=validation_scorer(val, metric), **kwargs)

    def report_epoch(self, epoch: int, value: float) -> None:
        if self.report is not None:
            self.report(epoch, value)

    def score_validation(self, prob: np.ndarray, metric: str | None = None) -> float:
        """The validation score of ``prob`` (the study metric, or ``metric`` by name); NaN when
        undefined on this validation set."""
        if self.validation is None:
            raise RuleError("this FitContext has no validation scorer; the harness binds one")
        return float(self.validation(np.asarray(prob, dtype=np.float64), metric))

    def require_backend(self, rule: Rule) -> Backend:
        """The backend, checked to provide what ``rule`` needs; a :class:`RuleError` naming
        the rule and what is missing otherwise."""
        if self.backend is None:
            raise RuleError(f"rule {rule.name!r} trains a spiking network and needs a backend")
        why = self.backend.lacks_message(rule.needs)
        if why:
            raise RuleError(f"rule {rule.name!r}: {why}")
        return self.backend


def validation_scorer(val: Split, metric: str) -> Callable[[np.ndarray, str | None], float]:
    """The harness side of :meth:`FitContext.score_validation`: scores probabilities of the
    rows of ``val`` (which keeps its labels here) with ``metric`` or a named metric."""
    from spikebench.harness.metrics import score

    def scorer(prob: np.ndarray, name: str | None = None) -> float:
        return score(name or metric, val.y, prob, val.groups)

    return scorer


def hide_labels(split: Split) -> Split:
    """``split`` with its labels replaced by ``-1``: what a rule sees of the validation set."""
    return Split(split.X, np.full(len(split.y), -1, dtype=np.int64), split.groups)


#: The cost counters every :meth:`TrainedModel.activity` returns (NaN where one does not apply).
COUNTERS = ("spikes_per_sample", "acs_per_sample", "macs_per_sample", "synops_per_sample")


class TrainedModel(abc.ABC):
    """A fitted model: probabilities per slice plus the cost figures the report shows."""

    #: Time steps the model was trained with.
    train_steps: int = 1
    #: Facts about the fit: ``epochs`` (the passes over the training data run, ``None`` for a
    #: rule that does not train in epochs such as a closed-form or solver fit: the report then
    #: leaves it out of training time per epoch), ``labels_used``, ``curves`` (active learning:
    #: list of {strategy, labels_used, val_balanced_accuracy, val_pr_auc}) ...
    info: dict[str, Any]

    @abc.abstractmethod
    def predict_proba(self, X: np.ndarray, *, steps: int | None = None) -> np.ndarray:
        """``P(lesion)`` per row of ``X`` (``[n]`` floats in [0, 1]) using ``steps`` time steps
        (default: :attr:`train_steps`)."""

    def activity(self, X: np.ndarray, *, steps: int | None = None) -> dict[str, float]:
        """Cost counters per sample on ``X``: ``spikes_per_sample``, ``acs_per_sample``
        (accumulates: synaptic events of binary spike inputs), ``macs_per_sample``
        (multiply-accumulates: real-valued inputs) and ``synops_per_sample`` (their sum).
        NaN where a counter does not apply."""
        return dict.fromkeys(COUNTERS, float("nan"))

    def export(
        self,
    ) -> tuple[NetworkSpec, Sequence[tuple[torch.Tensor, torch.Tensor | None]]] | None:
        """The trained feed-forward LIF network as (spec, weights), if it is one (for NIR)."""
        return None


#: A rule's parameters type: a frozen dataclass (or ``dict`` for free-form parameters).
P = TypeVar("P")


class Rule(abc.ABC, Generic[P]):
    """A learning rule. Subclasses set :attr:`name`, :attr:`summary` and :attr:`params_type`
    and implement :meth:`search_space` and :meth:`fit`. The equation the rule implements
    belongs in the subclass's docstring."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    #: The rule's parameters: a frozen dataclass whose fields are exactly the names of
    #: :meth:`search_space`, with their types and defaults; ``fit`` receives one, built by
    #: :meth:`parse_params`. ``dict`` (the default) keeps free-form parameters: ``fit`` then
    #: receives a plain dict of the values, unchecked (:mod:`~spikebench.harness.rules.params`).
    params_type: type[P] = dict  # type: ignore[assignment]
    #: What the rule needs of a backend (:mod:`spikebench.backends.capabilities`): it runs on
    #: every backend that provides all of them (:mod:`spikebench.harness.rules.serving`).
    #: Empty for the non-spiking references, which run without a backend in cells named
    #: ``reference/<rule>``.
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.DENSE_LIF})
    #: "snn" for spiking rules, "reference" for the non-spiking comparison models.
    kind: ClassVar[str] = "snn"
    #: What the harness passes as ``X``: "features" (the standardised feature table),
    #: "geometry" (standardised ROI area and slice position only: the leak detector) or
    #: "images" (lazy crop rows, :class:`~spikebench.datasets.crops.ImageRows`).
    inputs: ClassVar[str] = "features"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for old in ("requires", "needs_backend"):
            if old in cls.__dict__:
                raise TypeError(
                    f"{cls.__qualname__}.{old}: rules declare the capabilities they need; "
                    "replace it by needs = frozenset({Capability.DENSE_LIF, ...}) "
                    "(spikebench.backends.capabilities), or needs = frozenset() for a rule "
                    "that trains no spiking network")
        cls.needs = capability_set(cls.needs, f"{cls.__qualname__}.needs")

    @property
    def needs_backend(self) -> bool:
        """Whether the rule trains a spiking network (it needs any capability)."""
        return bool(self.needs)

    @abc.abstractmethod
    def search_space(self) -> dict[str, Param]:
        """Default hyperparameters (ranges the spec's ``[space.<rule>]`` may override)."""

    def domains(self) -> dict[str, Domain]:
        """What each hyper-parameter may be at all, whatever a spec asks (e.g. ``hidden``: a
        count of 1 to 4096; ``lr``: > 0): ``[space.<rule>]`` overrides outside are refused
        before any work. Default: the domains spikebench knows by parameter name
        (:func:`~spikebench.harness.space.builtin_domains`); a plug-in adds its own, e.g.
        ``{**super().domains(), "n_filters": Domain.counting(512)}``."""
        return builtin_domains(self.search_space())

    @classmethod
    def parse_params(cls, values: Mapping[str, Any]) -> P:
        """The :attr:`params_type` object of ``values`` (an Optuna trial's or a spec's dict):
        each value coerced to its field's type; an unknown or missing key, or a value of the
        wrong kind, is a :class:`RuleError` naming the rule and the key."""
        return parse_params(getattr(cls, "name", cls.__qualname__), cls.params_type, values)

    @abc.abstractmethod
    def fit(self, train: Split, val: Split, params: P, ctx: FitContext) -> TrainedModel:
        """Train on ``train`` with ``params`` (a :attr:`params_type`, from
        :meth:`parse_params`), early-stop on ``val``; never sees the test split."""


def class_weights(y: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights of classes 0 and 1 (balanced loss on imbalanced slices)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=2).astype(np.float64)
    counts[counts == 0] = 1.0
    return (counts.sum() / (2.0 * counts)).astype(np.float32)

