"""The learning-rule contract: train a backend's network on a split, return a probability model.

A rule is a plug-in (entry-point group ``spikebench.rules``) with one abstract method,
``Rule.fit``. The harness gives it standardised train and validation arrays (the sealed test
split never reaches a rule while tuning), the chosen hyperparameters as the rule's own typed
object (``Rule.params_type``, built by ``Rule.parse_params``:
``spikebench.harness.rules.params``) and a ``FitContext``; the rule returns a
``TrainedModel`` whose ``predict_proba`` gives ``P(lesion)`` per slice,
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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

import numpy as np

from spikebench.backends.capabilities import Capability, capability_set
from spikebench.errors import RuleError
from spikebench.harness.rules.model import (  # re-exported: the contract's one import path
    COUNTERS as COUNTERS,
)
from spikebench.harness.rules.model import TrainedModel
from spikebench.harness.rules.params import parse_params
from spikebench.harness.space import Domain, builtin_domains

if TYPE_CHECKING:
    import torch

    from spikebench.backends.base import Backend
    from spikebench.datasets.crops import ImageRows
    from spikebench.harness.space import Param


class DivergedError(RuleError):
    """Training diverged: a NaN/inf loss or an exploding membrane.

    Raise it from ``Rule.fit``; the harness prunes the Optuna trial with the message as its
    recorded reason, and the study goes on.

    Examples
    --------
    >>> from spikebench.harness.rules import DivergedError
    >>> raise DivergedError("loss is NaN at epoch 3 (lr 0.08)")
    Traceback (most recent call last):
    ...
    spikebench.harness.rules.base.DivergedError: loss is NaN at epoch 3 (lr 0.08)
    """


@dataclasses.dataclass
class Split:
    """One split's arrays, as a rule receives them.

    Attributes
    ----------
    X : numpy.ndarray
        Features ``[n, F]``, float32, standardised with the training split's statistics (on
        the image track: lazy crop rows, see ``of_images``).
    y : numpy.ndarray
        Labels ``[n]`` in {0, 1} (all ``-1`` in the validation split a rule receives: its
        labels are read only through ``FitContext.score_validation``).
    groups : numpy.ndarray
        Patient id of each row ``[n]``.

    Examples
    --------
    >>> import numpy as np
    >>> from spikebench.harness.rules import Split
    >>> split = Split(np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]),
    ...               np.array(["p1", "p1", "p2", "p2"]))
    >>> len(split), split.subset(np.array([1, 3])).y.tolist()
    (4, [1, 1])
    """

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray) -> Split:
        """The rows ``index`` (an integer or boolean array) of every array."""
        return Split(self.X[index], self.y[index], self.groups[index])

    @classmethod
    def of_images(cls, rows: ImageRows, y: np.ndarray, groups: np.ndarray) -> Split:
        """A split of the image track: ``X`` is lazy crop rows
        (``ImageRows``: ``len``, integer-array indexing and
        ``read_rows``), which rules with
        ``inputs = "images"`` read; ``X`` is annotated as an array for the feature rules,
        the common case, so this one constructor says where rows stand in for it."""
        return cls(cast(np.ndarray, rows), y, groups)


@dataclasses.dataclass
class FitContext:
    """What the harness lends a rule for one fit.

    The validation split a rule receives carries no labels (``val.y`` is all ``-1``): the only
    way to use validation labels is ``score_validation``, for early stopping and model
    selection on the study's objective.

    Attributes
    ----------
    backend : Backend or None
        The backend that builds the rule's networks; None for rules that need none (the
        non-spiking references). ``require_backend`` checks it provides what the rule needs.
    device : str or torch.device, default "cpu"
        Where to train.
    seed : int, default 0
        Seed of every random choice of the fit.
    report : callable, optional
        ``report(epoch, value)``: the harness's hook that passes a per-epoch validation score
        to Optuna's pruner; call it through ``report_epoch``.
    validation : callable, optional
        ``validation(prob, metric)``: the harness's scorer bound to the hidden validation
        labels; call it through ``score_validation``.

    Examples
    --------
    >>> import numpy as np
    >>> from spikebench.harness.rules import FitContext, Split
    >>> val = Split(np.zeros((4, 1), np.float32), np.array([0, 1, 0, 1]),
    ...             np.array(["a", "a", "b", "b"]))
    >>> ctx = FitContext.for_validation(val, "roc_auc")
    >>> ctx.score_validation(np.array([0.1, 0.9, 0.2, 0.8]))
    1.0
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
        """A context whose validation scorer reads ``val``'s labels: how to call a rule's
        ``fit`` directly (a notebook, a test).

        Pass ``hide_labels(val)`` as the rule's validation split to be sure it never reads the
        labels itself.

        Parameters
        ----------
        val : Split
            The validation split, with its labels.
        metric : str
            The study metric ``score_validation`` uses by default (``"pr_auc"``, ...).
        backend : Backend, optional
            The backend for a spiking rule.
        **kwargs
            ``device``, ``seed``, ``report``.

        Returns
        -------
        FitContext
        """
        return cls(backend=backend, validation=validation_scorer(val, metric), **kwargs)

    def report_epoch(self, epoch: int, value: float) -> None:
        """Pass epoch ``epoch``'s validation score ``value`` to the pruner (no-op outside a
        study).

        Raises
        ------
        optuna.TrialPruned
            When the pruner stops the trial; let it propagate.
        """
        if self.report is not None:
            self.report(epoch, value)

    def score_validation(self, prob: np.ndarray, metric: str | None = None) -> float:
        """Score probabilities of the validation rows against the hidden labels.

        Parameters
        ----------
        prob : numpy.ndarray
            ``P(lesion)`` of every validation row, in order.
        metric : str, optional
            A metric by name (default: the study metric).

        Returns
        -------
        float
            The score; NaN when undefined on this validation set (one class only).

        Raises
        ------
        RuleError
            The context has no scorer (build it with ``for_validation``).
        """
        if self.validation is None:
            raise RuleError("this FitContext has no validation scorer; the harness binds one")
        return float(self.validation(np.asarray(prob, dtype=np.float64), metric))

    def require_backend(self, rule: Rule) -> Backend:
        """The backend, checked to provide what ``rule`` needs.

        Parameters
        ----------
        rule : Rule
            The rule about to build networks.

        Returns
        -------
        Backend

        Raises
        ------
        RuleError
            No backend, or it lacks a capability of ``rule.needs`` (the message names them).
        """
        if self.backend is None:
            raise RuleError(f"rule {rule.name!r} trains a spiking network and needs a backend")
        why = self.backend.lacks_message(rule.needs)
        if why:
            raise RuleError(f"rule {rule.name!r}: {why}")
        return self.backend


def validation_scorer(val: Split, metric: str) -> Callable[[np.ndarray, str | None], float]:
    """The harness side of ``FitContext.score_validation``: scores probabilities of the
    rows of ``val`` (which keeps its labels here) with ``metric`` or a named metric."""
    from spikebench.harness.metrics import score

    def scorer(prob: np.ndarray, name: str | None = None) -> float:
        return score(name or metric, val.y, prob, val.groups)

    return scorer


def hide_labels(split: Split) -> Split:
    """``split`` with its labels replaced by ``-1``: what a rule sees of the validation set."""
    return Split(split.X, np.full(len(split.y), -1, dtype=np.int64), split.groups)


#: A rule's parameters type: a frozen dataclass (or ``dict`` for free-form parameters).
P = TypeVar("P")


class Rule(abc.ABC, Generic[P]):
    """A learning rule, registered in the ``spikebench.rules`` entry-point group.

    Subclasses set ``name``, ``summary``, ``needs`` and ``params_type`` and implement
    ``search_space`` and ``fit``. The equation the rule implements belongs in the subclass's
    docstring. Run ``spikebench.harness.rules.conformance.check_rule`` from your tests to
    prove conformance.

    Attributes
    ----------
    name : str
        The registered name (``[grid].rules``, ``spikebench rules``).
    summary : str
        One line for ``spikebench rules``.
    params_type : type
        The rule's parameters: a frozen dataclass whose fields are exactly the names of
        ``search_space``, with types and defaults (``dict``: free-form, unchecked).
    needs : frozenset of Capability
        What it needs of a backend; empty for a non-spiking reference (run without a backend
        in cells named ``reference/<rule>``).
    kind : str
        ``"snn"`` or ``"reference"``.
    inputs : str
        What the harness passes as ``X``: ``"features"``, ``"geometry"`` (ROI area and slice
        position only) or ``"images"`` (lazy crop rows).

    Examples
    --------
    Fit the logistic-regression reference (a solver fit: no epochs) on a small held-out
    problem, the validation labels hidden from the rule:

    >>> from spikebench.harness.rules import FitContext, get_rule
    >>> from spikebench.harness.rules.base import hide_labels
    >>> from spikebench.harness.rules.conformance import held_out_problem
    >>> from spikebench.harness.space import default_values
    >>> train, val, test = held_out_problem(0)
    >>> rule = get_rule("logistic_regression")
    >>> params = rule.parse_params(default_values(rule.search_space()))
    >>> ctx = FitContext.for_validation(val, "roc_auc", seed=0)
    >>> model = rule.fit(train, hide_labels(val), params, ctx)
    >>> prob = model.predict_proba(test.X)
    >>> prob.shape == (len(test),) and bool(((prob >= 0) & (prob <= 1)).all())
    True
    >>> model.info["epochs"] is None
    True
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    #: The rule's parameters: a frozen dataclass whose fields are exactly the names of
    #: ``search_space``, with their types and defaults; ``fit`` receives one, built by
    #: ``parse_params``. ``dict`` (the default) keeps free-form parameters: ``fit`` then
    #: receives a plain dict of the values, unchecked (``params``).
    params_type: type[P] = dict  # type: ignore[assignment]
    #: What the rule needs of a backend (``spikebench.backends.capabilities``): it runs on
    #: every backend that provides all of them (``spikebench.harness.rules.serving``).
    #: Empty for the non-spiking references, which run without a backend in cells named
    #: ``reference/<rule>``.
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.DENSE_LIF})
    #: "snn" for spiking rules, "reference" for the non-spiking comparison models.
    kind: ClassVar[str] = "snn"
    #: What the harness passes as ``X``: "features" (the standardised feature table),
    #: "geometry" (standardised ROI area and slice position only: the leak detector) or
    #: "images" (lazy crop rows, ``ImageRows``).
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
        """The default search space.

        Returns
        -------
        dict of str to Param
            Parameter name → ``Float``, ``Int``, ``Categorical`` (tuned) or ``Fixed`` (not
            tuned; optuna-dashboard shows these as ``fixed.<name>``). A spec's
            ``[space.<rule>]`` overrides them within ``domains``.
        """

    def domains(self) -> dict[str, Domain]:
        """What each hyper-parameter may be at all, whatever a spec asks.

        ``[space.<rule>]`` overrides outside are refused before any work.

        Returns
        -------
        dict of str to Domain
            Default: the domains spikebench knows by parameter name (``hidden``: a count of 1
            to 4096; ``lr``: > 0, ...). A plug-in adds its own, e.g.
            ``{**super().domains(), "n_filters": Domain.counting(512)}``.
        """
        return builtin_domains(self.search_space())

    @classmethod
    def parse_params(cls, values: Mapping[str, Any]) -> P:
        """The ``params_type`` object of a dict of values, each coerced to its field's type.

        Parameters
        ----------
        values : Mapping
            An Optuna trial's or a spec's parameters.

        Returns
        -------
        params_type

        Raises
        ------
        RuleError
            An unknown or missing key, or a value of the wrong kind (naming the rule and the
            key).
        """
        return parse_params(getattr(cls, "name", cls.__qualname__), cls.params_type, values)

    @abc.abstractmethod
    def fit(self, train: Split, val: Split, params: P, ctx: FitContext) -> TrainedModel:
        """Train on one split and early-stop (or select) on validation.

        The test split never reaches a rule.

        Parameters
        ----------
        train : Split
            The training rows, with labels.
        val : Split
            The validation rows, labels hidden (``-1``): score through
            ``ctx.score_validation``.
        params : params_type
            The hyperparameters (``parse_params``).
        ctx : FitContext
            The backend, device, seed, pruning hook and validation scorer.

        Returns
        -------
        TrainedModel

        Raises
        ------
        DivergedError
            Training diverged (the trial is pruned).
        RuleError
            The parameters or the backend cannot work.
        """


def class_weights(y: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights of classes 0 and 1 (balanced loss on imbalanced slices)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=2).astype(np.float64)
    counts[counts == 0] = 1.0
    return (counts.sum() / (2.0 * counts)).astype(np.float32)

