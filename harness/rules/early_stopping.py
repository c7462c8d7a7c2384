"""Early stopping on the validation score: the one loop every iterative rule uses.

A rule calls :meth:`EarlyStopping.update` once per epoch (or round) with the validation score;
the score improves when it beats the best so far by more than ``min_delta``; training stops
after ``patience`` epochs without improvement, and the rule restores the state it saved at the
best epoch. An undefined score (NaN: one class in validation) ranks below every real value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from spikebench.harness.metrics import validation_value


class EarlyStopping:
    """Track the best validation score and the state that produced it.

    ``state`` is whatever the rule needs to restore (weights, a readout copy); it is stored as
    given, so pass a copy.
    """

    def __init__(self, patience: int | None, *, min_delta: float = 1e-9) -> None:
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 (or None: never stop), got {patience}")
        self.patience, self.min_delta = patience, float(min_delta)
        self.best = -math.inf
        self.best_state: Any = None
        self.stale = 0

    def update(self, value: float | None, state: Any = None) -> bool:
        """Record one epoch's score; returns True when it is a new best (``state`` is kept)."""
        value = validation_value(value)
        if value > self.best + self.min_delta:
            self.best, self.best_state, self.stale = value, state, 0
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        """``patience`` epochs in a row without improvement (never with ``patience=None``)."""
        return self.patience is not None and self.stale >= self.patience


def fit_epochs(net: Any, *, epochs: int, patience: int | None,
               train_epoch: Callable[[int], None], score: Callable[[], float],
               report: Callable[[int, float], None] | None = None) -> tuple[int, float]:
    """The epoch loop of every gradient-trained rule: ``train_epoch(epoch)`` in train mode,
    then ``score()`` on validation in eval mode (passed to ``report``, e.g. Optuna's pruner),
    keeping the weights of the best epoch; stops after ``patience`` epochs without
    improvement and restores the best weights. Returns ``(epochs run, best score)``."""
    import copy

    stopper = EarlyStopping(patience)
    stopper.best_state, ran = copy.deepcopy(net.state_dict()), 0
    for epoch in range(epochs):
        net.train()
        train_epoch(epoch)
        ran = epoch + 1
        net.eval()
        value = score()
        if report is not None:
            report(epoch, value)
        if stopper.update(value):
            stopper.best_state = copy.deepcopy(net.state_dict())
        elif stopper.should_stop:
            break
    net.load_state_dict(stopper.best_state)
    net.eval()
    return ran, stopper.best


def minibatch_epoch(opt: Any, n: int, batch: int, rng: Any,
                    loss_of: Callable[[Any], Any]) -> None:
    """One pass over ``n`` rows in the order ``rng.permutation(n)``, ``batch`` rows at a time:
    ``loss_of(indices)`` (a NumPy index array), backward, one optimizer step."""
    order = rng.permutation(n)
    for start in range(0, n, batch):
        loss = loss_of(order[start:start + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
