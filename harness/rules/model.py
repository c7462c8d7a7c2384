"""The model a learning rule returns: probabilities per slice, cost counters, an export.

``Rule.fit`` returns a ``TrainedModel``; ``spikebench.harness.rules.base`` re-exports it (the
contract's one import path).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from spikebench.backends.base import NetworkSpec


#: The cost counters every ``TrainedModel.activity`` returns (NaN where one does not apply).
COUNTERS = ("spikes_per_sample", "acs_per_sample", "macs_per_sample", "synops_per_sample")


class TrainedModel(abc.ABC):
    """A fitted model: probabilities per slice plus the cost figures the report shows.

    ``Rule.fit`` returns one. Implement ``predict_proba``; override ``activity`` (the cost
    counters) and, for a feed-forward LIF network, ``export`` (NIR export and NeuroBench's
    footprint and sparsities).

    Attributes
    ----------
    train_steps : int
        Time steps the model was trained with (1 for a non-spiking model).
    info : dict
        Facts about the fit (see below; ``check_rule`` checks ``epochs`` and
        ``labels_used``).

    Examples
    --------
    A constant model, the smallest implementation:

    >>> import numpy as np
    >>> from spikebench.harness.rules import TrainedModel
    >>> class Prevalence(TrainedModel):
    ...     def __init__(self, p):
    ...         self.p, self.info = p, {"epochs": None, "labels_used": 10}
    ...     def predict_proba(self, X, *, steps=None):
    ...         return np.full(len(X), self.p)
    >>> model = Prevalence(0.25)
    >>> model.predict_proba(np.zeros((3, 2))).tolist(), model.export()
    ([0.25, 0.25, 0.25], None)
    >>> sorted(model.activity(np.zeros((3, 2))))  # NaN: no counter applies
    ['acs_per_sample', 'macs_per_sample', 'spikes_per_sample', 'synops_per_sample']
    """

    #: Time steps the model was trained with.
    train_steps: int = 1
    #: Facts about the fit: ``epochs`` (the passes over the training data run, ``None`` for a
    #: rule that does not train in epochs such as a closed-form or solver fit: the report then
    #: leaves it out of training time per epoch), ``labels_used``, ``curves`` (active learning:
    #: list of {strategy, labels_used, val_balanced_accuracy, val_pr_auc}) ...
    info: dict[str, Any]

    @abc.abstractmethod
    def predict_proba(self, X: np.ndarray, *, steps: int | None = None) -> np.ndarray:
        """``P(lesion)`` of every row.

        Parameters
        ----------
        X : numpy.ndarray
            ``[n, F]`` rows, standardised as in training.
        steps : int, optional
            Time steps to run (default: ``train_steps``); a spiking model must also run with
            other values (the report's metric-vs-T figure).

        Returns
        -------
        numpy.ndarray
            ``[n]`` floats in [0, 1].
        """

    def activity(self, X: np.ndarray, *, steps: int | None = None) -> dict[str, float]:
        """Cost counters per sample on ``X``.

        Parameters
        ----------
        X : numpy.ndarray
            ``[n, F]`` rows (the test slices).
        steps : int, optional
            Time steps to run (default: ``train_steps``).

        Returns
        -------
        dict of str to float
            ``spikes_per_sample``, ``acs_per_sample`` (accumulates: synaptic events of binary
            spike inputs, NeuroBench's effective ACs), ``macs_per_sample``
            (multiply-accumulates: real-valued inputs, effective MACs) and
            ``synops_per_sample`` (their sum), NaN where a counter does not apply; a rule may
            add counters of its own (they become results columns).
        """
        return dict.fromkeys(COUNTERS, float("nan"))

    def export(
        self,
    ) -> tuple[NetworkSpec, Sequence[tuple[torch.Tensor, torch.Tensor | None]]] | None:
        """The trained feed-forward LIF network, if the model is one.

        Returns
        -------
        (NetworkSpec, list of (torch.Tensor, torch.Tensor or None)) or None
            The spec and neutral weights, for the NIR export and NeuroBench's metrics
            (``spikebench.harness.network_metrics``); None (the default) for other models.
        """
        return None


__all__ = ["COUNTERS", "TrainedModel"]
