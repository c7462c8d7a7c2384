"""The Tempotron on a time-to-first-spike code of the liver crops (the image track).

A fixed front-end, nothing in it learned, turns each standardised crop ``x`` (``[C, S, S]``,
the harness's train-pixel standardisation) into ``N = C·g²`` afferent values (``g`` =
``grid``, default 8: 64 afferents for a one-channel crop):

1. average-pool to ``g × g``: with block side ``b = S / g``

       p_{c,k,l} = (1/b²) Σ_{0 ≤ i, j < b} x_{c, k·b + i, l·b + j}      (afferent c·g² + k·g + l)

   ``grid`` must divide the crop size: every afferent then averages the same ``b²`` pixels
   (no overlapping or uneven bins); otherwise a :class:`~spikebench.errors.RuleError` names
   ``grid``, the crop size and the grids that fit;
2. standardise each afferent with the mean and standard deviation of the *training* crops'
   pooled values, ``z = (p − μ) / σ`` (σ = 1 for a constant afferent), as the harness
   standardises the feature table on train: the latency encoder below assumes standardised
   inputs, and block means of standardised pixels are neither centred per block (the middle of
   a crop is liver, its corners may be air) nor of unit spread (averaging shrinks the noise).
   ``μ, σ`` are stored with the model and applied unchanged to validation and test crops;
3. exactly the Tempotron of :mod:`spikebench.harness.rules.tempotron` on ``z``: time to first
   spike ``t = round((1 − σ(gain·z)) (T − 1))`` (``population = 1``: bright blocks fire early,
   a dark lesion block late) or its Gaussian population code (``population = M``), the
   backend's ``build_tempotron`` potential ``V(t) = Σ_i w_i K(t − t_i)``, shunting after the
   first crossing, ``Δw_i = ±λ_y K(t_max − t_i)`` on misses and false alarms, the vote
   ``d = m_1 − m_0`` of the class populations and Platt scaling on the training patterns.
   :class:`ImageTempotron` fits with the feature rule's
   :func:`~spikebench.harness.rules.tempotron.fit_tempotron` (its parameters extend
   :class:`~spikebench.harness.rules.tempotron.TempotronParams`) and
   :class:`ImageTempotronModel` wraps the fitted
   :class:`~spikebench.harness.rules.tempotron.TempotronModel`: the learning rule, its search
   space and its early stopping are the feature rule's, plus ``grid``.

Why: the smallest spiking model of the image track. It needs no convolutional builder (every
backend that lists ``"tempotron"`` serves it) and asks whether the Tempotron's single
timing decision, on a coarse spatial latency code of where the crop is dark or bright, finds
lesions without learned features.

Reading: crops are read and pooled ``CHUNK`` rows at a time
(:mod:`~spikebench.harness.rules.batches`; the memory-mapped cohort is never in RAM, the pooled
vectors of all rows, ``N`` floats per slice, are). Inference pools and runs
the Tempotron chunk by chunk too. Training holds what the feature Tempotron holds: the kernel
matrix ``[T, n_train, N·M]`` of the training split for the whole fit (M = ``population``), so
``grid = 16`` (256 afferents per channel) quadruples its memory over the default.

Costs per sample: the Tempotron's counters on the pooled code (output spikes, at most one per
neuron; ACs = afferent spikes × output neurons; no MACs) are the synaptic events and the only
ones in ``synops_per_sample``. The pooling is not a synaptic event and is reported apart, as
``pool_adds_per_sample = C (S² − g²)`` (each of the ``C g²`` block sums adds ``b²`` pixels:
``b² − 1`` additions; also in ``model.info``). Not counted, as for the feature Tempotron's
encoder: the per-afferent affine of steps 1-2 (the ``1/b²`` scale folds into it: ``C g²``
subtractions and multiplications) and the sigmoid and rounding of the latency encoder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from spikebench.backends.capabilities import Capability
from spikebench.errors import RuleError
from spikebench.harness.rules.base import (
    COUNTERS,
    FitContext,
    Rule,
    Split,
    TrainedModel,
)
from spikebench.harness.rules.batches import read_rows, row_chunks
from spikebench.harness.rules.checks import check_finite_params
from spikebench.harness.rules.tempotron import (
    Tempotron,
    TempotronModel,
    TempotronParams,
    fit_tempotron,
)
from spikebench.harness.space import Fixed, Param

#: Side of the pooled grid unless the spec's ``[space.image_tempotron]`` says otherwise.
DEFAULT_GRID = 8


def check_grid(grid: int, size: int) -> None:
    """:class:`RuleError` naming ``grid`` and the crop size unless ``grid`` divides it."""
    if grid >= 1 and size % grid == 0:
        return
    fits = [d for d in range(1, size + 1) if size % d == 0]
    raise RuleError(
        f"image_tempotron: grid = {grid} does not divide the crop size {size} (crop = {size} "
        f"pixels), so the pooled blocks would be uneven; set grid in [space.image_tempotron] "
        f"to one of {fits} or choose a crop size that {grid} divides")


def crop_size(X: Any) -> tuple[int, int]:
    """``(channels C, side S)`` of square crop rows ``X`` shaped ``[n, C, S, S]``."""
    shape = tuple(int(s) for s in X.shape)
    if len(shape) != 4 or shape[2] != shape[3]:
        raise RuleError(f"image_tempotron reads square crop rows [n, C, S, S]; got shape {shape} "
                        "(give it an images = true study, whose rules read the crops)")
    return shape[1], shape[3]


def pool_grid(crops: np.ndarray, grid: int) -> np.ndarray:
    """Step 1 of the module docstring: block means ``[n, C·g²]`` (float32) of ``crops``
    ``[n, C, S, S]``, channel-major, then row, then column."""
    crops = np.asarray(crops)
    channels, size = crop_size(crops)
    check_grid(grid, size)
    b = size // grid
    blocks = crops.reshape(len(crops), channels, grid, b, grid, b)
    return blocks.mean(axis=(3, 5), dtype=np.float64).reshape(len(crops), -1).astype(np.float32)


def pooled_chunks(X: Any, grid: int, chunk: int | None = None) -> Iterator[np.ndarray]:
    """:func:`pool_grid` of the rows of ``X`` (lazy crop rows or an array), ``chunk``
    (default :data:`~spikebench.harness.rules.batches.CHUNK`) rows read at a time, in row
    order."""
    _, size = crop_size(X)
    check_grid(grid, size)
    for index in row_chunks(len(X), chunk):
        yield pool_grid(read_rows(X, index), grid)


def pooled_rows(X: Any, grid: int, chunk: int | None = None) -> np.ndarray:
    """The pooled vectors ``[n, C·g²]`` of every row of ``X`` (read ``chunk`` rows at a time)."""
    channels, _ = crop_size(X)
    parts = list(pooled_chunks(X, grid, chunk))
    return (np.concatenate(parts) if parts
            else np.zeros((0, channels * grid * grid), dtype=np.float32))


@dataclasses.dataclass(frozen=True)
class PooledCode:
    """The fixed front-end (steps 1-2): ``grid`` and the training pooled values' per-afferent
    mean and standard deviation."""

    grid: int
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, pooled: np.ndarray, grid: int) -> PooledCode:
        """Statistics of the *training* pooled vectors ``[n, C·g²]``."""
        pooled = np.asarray(pooled, dtype=np.float64)
        mean = pooled.mean(0) if len(pooled) else np.zeros(pooled.shape[1])
        std = pooled.std(0) if len(pooled) else np.ones(pooled.shape[1])
        std = np.where(std > 1e-12, std, 1.0)
        return cls(int(grid), mean.astype(np.float32), std.astype(np.float32))

    def standardise(self, pooled: np.ndarray) -> np.ndarray:
        """Step 2: ``z = (p − μ) / σ`` (float32)."""
        return ((np.asarray(pooled, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def chunks(self, X: Any) -> Iterator[np.ndarray]:
        """The standardised pooled code of the rows of ``X``, chunk by chunk."""
        for pooled in pooled_chunks(X, self.grid):
            yield self.standardise(pooled)

    def pool_adds(self, X: Any) -> float:
        """Additions per crop of the pooling, ``C (S² − g²)`` (module docstring)."""
        channels, size = crop_size(X)
        return float(channels * (size * size - self.grid * self.grid))


class ImageTempotronModel(TrainedModel):
    """A fitted :class:`TempotronModel` behind the fixed pooled front-end: crops in, pooled and
    standardised chunk by chunk, the Tempotron's vote and calibration out."""

    def __init__(self, tempotron: TempotronModel, code: PooledCode) -> None:
        self.tempotron, self.code = tempotron, code
        self.train_steps = tempotron.train_steps
        self.info = tempotron.info

    def decision(self, X: Any, steps: int | None = None) -> np.ndarray:
        """The Tempotron's vote ``d = m_1 − m_0`` per crop row of ``X`` (float64)."""
        parts = [self.tempotron.decision(z, steps) for z in self.code.chunks(X)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def predict_proba(self, X: Any, *, steps: int | None = None) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        return self.tempotron.calibration(self.decision(X, steps))

    def activity(self, X: Any, *, steps: int | None = None) -> dict[str, float]:
        """The Tempotron's counters per sample on the pooled code, plus
        ``pool_adds_per_sample`` (not synaptic events: module docstring)."""
        totals, n = dict.fromkeys(COUNTERS, 0.0), 0
        for z in self.code.chunks(X):
            counters = self.tempotron.activity(z, steps=steps)
            for name in COUNTERS:
                totals[name] += float(counters[name]) * len(z)
            n += len(z)
        out = {name: value / max(n, 1) for name, value in totals.items()}
        out["pool_adds_per_sample"] = self.code.pool_adds(X)
        return out


@dataclasses.dataclass(frozen=True)
class ImageTempotronParams(TempotronParams):
    """The Tempotron's parameters plus the fixed front-end's ``grid``."""

    grid: int = DEFAULT_GRID


class ImageTempotron(Rule[ImageTempotronParams]):
    """The Tempotron on average-pooled crops coded by time to first spike (module
    docstring)."""

    name = "image_tempotron"
    needs = frozenset({Capability.TEMPOTRON})
    summary = ("image track: Tempotron on a time-to-first-spike code of grid x grid "
               "average-pooled crops")
    inputs = "images"
    params_type = ImageTempotronParams

    def search_space(self) -> dict[str, Param]:
        """The Tempotron's space plus the fixed front-end's ``grid``."""
        return {**Tempotron().search_space(), "grid": Fixed(DEFAULT_GRID)}

    def fit(self, train: Split, val: Split, params: ImageTempotronParams, ctx: FitContext
            ) -> ImageTempotronModel:
        grid = params.grid
        ctx.require_backend(self)  # before reading any crop
        check_finite_params(params)  # a NaN gain: NaN spike times, every afferent silent
        pooled = pooled_rows(train.X, grid)
        code = PooledCode.fit(pooled, grid)
        tempotron = fit_tempotron(
            self, Split(code.standardise(pooled), train.y, train.groups),
            Split(code.standardise(pooled_rows(val.X, grid)), val.y, val.groups), params, ctx)
        tempotron.info.update(grid=grid, afferent_values=int(pooled.shape[1]),
                              pool_adds_per_sample=code.pool_adds(train.X))
        return ImageTempotronModel(tempotron, code)


__all__ = ["ImageTempotron", "ImageTempotronModel", "ImageTempotronParams", "PooledCode",
           "check_grid", "pool_grid", "pooled_rows"]
