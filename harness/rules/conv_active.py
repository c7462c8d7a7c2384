"""Bio-inspired active learning on the liver crops: convolutional (shared) STDP filters, the
delta-rule readout and the uncertainty-sampling loop of :mod:`spikebench.harness.rules.active`.
No backpropagation; labels are used by the readout only.

1. **Input.** The standardised crop ``x`` (``[C, S, S]``) is average-pooled to the working size
   ``P = min(working_size, S)`` (``x̄ = AvgPool(x)``, a ``P × P`` map), and every pixel drives an
   ON and an OFF afferent, ``g·x̄`` and ``−g·x̄``, rate-coded (Bernoulli σ(·) per step) as in
   :func:`~spikebench.harness.rules.active.on_off_spikes`: spike maps ``s[t]`` of shape
   ``[2C, P, P]``.
2. **Convolutional STDP layer, no labels.** ``F`` filters of size ``2C × k × k`` at stride
   ``σ`` (``stride``) over the ``L = L_h · L_w`` locations, ``L_h = L_w = ⌊(P − k)/σ⌋ + 1``.
   The patch of location ``ℓ`` is a pattern ``u_ℓ[t] ∈ {0,1}^{2Ck²}`` (``torch``'s ``unfold``:
   channel-major, then row, then column), and the layer *is* the backend's dense LIF layer
   ``NetworkSpec(sizes=(2Ck², F))`` run on the ``B·L`` patterns of a batch of ``B`` crops::

       I_fℓ[t] = Σ_i W_fi u_ℓi[t] + b_f  =  (W ⊛_σ s[t])_fℓ + b_f

   i.e. one weight matrix applied at every location: the filters are shared, and the currents
   equal a stride-``σ`` convolution of the ON/OFF maps with ``W`` seen as ``[F, 2C, k, k]``
   (the tests check this). The backend runs the LIF dynamics; the rule applies, per batch of
   ``stdp_batch`` crops, :func:`~spikebench.harness.rules.active.stdp_step`: winner-take-all
   *per location* among the ``F`` filters (the first to fire at ``ℓ`` learns there), pair-based
   STDP summed over all locations and crops — the shared-filter update — ::

       ΔW = η Σ_{b, ℓ} Σ_{pairs} W(t_post − t_pre)   (winner of (b, ℓ) only),  η = w_sum / 2Ck²

   then ``W ≥ 0``, ``Σ_i W_fi = w_sum`` and homeostatic thresholds
   ``b_f ← b_f + η_h (ρ − r_f)``, ``r_f`` = spikes per step of filter ``f`` per location.
   Because the sum runs over ``B·L`` patterns, the default ``A+`` is smaller than the dense
   rule's.
3. **Hidden representation.** The spike counts ``n_fℓ = Σ_t S_fℓ[t]`` are summed over a
   coarse ``G × G`` grid of location regions (``grid``; region ``(r, c)`` holds locations
   ``(i, j)`` with ``⌊iG/L_h⌋ = r``, ``⌊jG/L_w⌋ = c``)::

       h_{f,r,c} = Σ_{ℓ ∈ region (r, c)} n_fℓ           (F·G² features per crop)

4. **Readout and active loop**: those of :mod:`~spikebench.harness.rules.active` (sections
   3-4) on ``h``, unchanged: z-scored rates, class-weighted delta rule, seed patients, queries
   by smallest margin (or random, the control) up to the label ``budget``.

Crops are read in chunks (:func:`~spikebench.harness.rules.batches.read_rows`): at most
``PATTERNS`` patch patterns (crops × locations) are in memory at once, never the cohort.

Costs per crop (:meth:`ConvActiveModel.activity`): ``spikes_per_sample`` = the filters' spikes
over all locations; ``acs_per_sample`` = ``F`` × the input spike events *per location they
reach* (the sum of the unfolded patches: a pixel's spike is counted once for each of the
``≤ ⌈k/σ⌉²`` windows holding it, exact at the border), each event adding one weight to each
of ``F`` membranes; ``macs_per_sample`` = ``2·F·G²``, the readout's weights on the real-valued
features. Not counted as synaptic operations, as for the other rules' encoders: the
average-pooling of the crop (``C·S²`` additions), the grid sums (counter increments) and the
z-scoring.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf

from spikebench.backends.base import NetworkSpec, SpikingNetwork
from spikebench.backends.capabilities import Capability
from spikebench.harness.rules.active import (
    ActiveLearning,
    ActiveModel,
    LocalLearningParams,
    Readout,
    check_params,
    fit_readout,
    init_hidden_weights,
    on_off_spikes,
    pool_stats,
    stdp_step,
)
from spikebench.harness.rules.base import (
    DivergedError,
    FitContext,
    Rule,
    Split,
)
from spikebench.harness.rules.batches import read_rows, row_chunks
from spikebench.harness.rules.checks import check_finite_params
from spikebench.harness.space import Fixed, Float, Int, Param

#: Patch patterns (crops × locations) per inference chunk: bounds the memory of a forward pass.
PATTERNS = 8192


@dataclasses.dataclass(frozen=True)
class ConvActiveParams(LocalLearningParams):
    """The parameters of :class:`ConvActiveLearning` (its :meth:`~ConvActiveLearning.
    search_space`): the dense rule's, with the filters and the patch geometry in place of
    ``hidden`` and smaller STDP steps and batches."""

    steps: int = 16
    a_plus: float = 5e-3
    stdp_epochs: int = 1
    stdp_batch: int = 8
    filters: int = 16
    working_size: int = 16
    kernel: int = 5
    stride: int = 2
    grid: int = 2


@dataclasses.dataclass(frozen=True)
class PatchGeometry:
    """Working size ``P``, kernel ``k``, stride, locations per side ``L`` and grid ``G``."""

    channels: int
    size: int
    kernel: int
    stride: int
    grid: int

    @classmethod
    def of(cls, shape: tuple[int, ...], p: ConvActiveParams) -> PatchGeometry:
        """The geometry for crops shaped ``shape`` (``[n, C, S, S]``) under parameters ``p``;
        ``ValueError`` when the kernel does not fit the working size."""
        size = min(p.working_size, int(shape[-1]))
        kernel, stride, grid = p.kernel, p.stride, p.grid
        if not 1 <= kernel <= size or stride < 1 or grid < 1:
            raise ValueError(f"need 1 <= kernel ({kernel}) <= working size ({size}), "
                             f"stride >= 1 ({stride}) and grid >= 1 ({grid})")
        return cls(int(shape[1]), size, kernel, stride, grid)

    @property
    def side(self) -> int:
        """Locations per side, ``L_h = L_w``."""
        return (self.size - self.kernel) // self.stride + 1

    @property
    def patch_inputs(self) -> int:
        """Afferents per patch, ``2Ck²`` (ON and OFF)."""
        return 2 * self.channels * self.kernel ** 2


def unfold_patches(spikes: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """``[T, B, 2C, P, P]`` spike maps → ``[T, B·L, 2Ck²]`` patch patterns (crop-major, then
    locations row by row; a pattern is channel-major, then row, then column: the layout of a
    ``conv2d`` weight ``[F, 2C, k, k]`` flattened)."""
    steps, batch = spikes.shape[:2]
    cols = nnf.unfold(spikes.flatten(0, 1), kernel, stride=stride)  # [T·B, 2Ck², L]
    return cols.transpose(1, 2).reshape(steps, batch * cols.shape[-1], cols.shape[1])


def grid_sum(counts: torch.Tensor, grid: int) -> torch.Tensor:
    """``[B, L_h, L_w, F]`` per-location counts → ``[B, F·G²]`` sums over ``G × G`` regions
    (module docstring, section 3), feature order ``(f, r, c)``."""
    side_h, side_w = counts.shape[1:3]

    def regions(side: int) -> torch.Tensor:
        which = torch.arange(side, device=counts.device) * grid // side
        return nnf.one_hot(which, grid).to(counts.dtype)  # [L, G]

    out = torch.einsum("bijf,ir,jc->bfrc", counts, regions(side_h), regions(side_w))
    return out.flatten(1)


def patch_spikes(rows: np.ndarray, geometry: PatchGeometry, p: ConvActiveParams, steps: int,
                 generator: torch.Generator, device: Any, dtype: torch.dtype) -> torch.Tensor:
    """Crops ``[B, C, S, S]`` → pooled ON/OFF spike maps → ``[T, B·L, 2Ck²]`` patterns."""
    x = torch.as_tensor(rows, device=device, dtype=dtype)
    if not bool(torch.isfinite(x).all()):
        raise DivergedError("non-finite input: NaN/inf pixels in the crops")
    if x.shape[-1] != geometry.size:
        x = nnf.adaptive_avg_pool2d(x, geometry.size)
    spikes = on_off_spikes(x, p.encoding, steps, p.gain, generator)
    return unfold_patches(spikes, geometry.kernel, geometry.stride)


def conv_hidden_counts(net: SpikingNetwork, X: Any, geometry: PatchGeometry,
                       p: ConvActiveParams, steps: int, device: Any, seed: int = 0
                       ) -> tuple[torch.Tensor, float]:
    """Grid-summed filter spike counts ``[n, F·G²]`` (float64, CPU) of the crops ``X``, read
    chunk by chunk, and the input events per location reached (the unfolded patches' sum)."""
    dtype = next(net.parameters()).dtype
    gen = torch.Generator(device=device).manual_seed(seed)
    side, n_filters = geometry.side, net.spec.sizes[1]
    chunk = max(1, PATTERNS // side ** 2)
    out, events = [], 0.0
    with torch.no_grad():
        for index in row_chunks(len(X), chunk):
            rows = read_rows(X, index)
            pre = patch_spikes(rows, geometry, p, steps, gen, device, dtype)
            events += float(pre.sum())
            counts = net(pre).spikes.sum(0).double().cpu()
            out.append(grid_sum(counts.view(len(rows), side, side, n_filters), geometry.grid))
    if not out:
        return torch.zeros(0, n_filters * geometry.grid ** 2, dtype=torch.float64), 0.0
    return torch.cat(out), events


def train_filters(net: SpikingNetwork, X: Any, geometry: PatchGeometry, p: ConvActiveParams,
                  device: Any, seed: int) -> None:
    """Unsupervised phase (section 2): shared-filter STDP on every crop of ``X``, in random
    batches of ``stdp_batch`` crops for ``stdp_epochs`` passes."""
    init_hidden_weights(net, p, device, seed)
    dtype = next(net.parameters()).dtype
    gen = torch.Generator(device=device).manual_seed(seed)
    rng = np.random.default_rng(seed)
    batch, steps = p.stdp_batch, p.steps
    with torch.no_grad():
        for _ in range(p.stdp_epochs):
            order = rng.permutation(len(X))
            for start in range(0, len(order), batch):
                rows = read_rows(X, order[start:start + batch])
                stdp_step(net, patch_spikes(rows, geometry, p, steps, gen, device, dtype), p)


class ConvActiveModel(ActiveModel):
    """The shared STDP filters plus the delta-rule readout on grid-summed counts; costs as in
    the module docstring (the readout's MACs are its ``2·F·G²`` weights)."""

    params: ConvActiveParams

    def __init__(self, net: SpikingNetwork, geometry: PatchGeometry, readout: Readout,
                 mean: torch.Tensor, std: torch.Tensor, params: ConvActiveParams, device: Any
                 ) -> None:
        super().__init__(net, readout, mean, std, params, device, info={})
        self.geometry = geometry

    def hidden_counts(self, X: Any, steps: int | None = None, seed: int = 0
                      ) -> tuple[torch.Tensor, float]:
        """Grid-summed counts ``[n, F·G²]`` and input events per location reached."""
        return conv_hidden_counts(self.net, X, self.geometry, self.params,
                                  steps or self.train_steps, self.device, seed)


class ConvActiveLearning(Rule[ConvActiveParams]):
    """Convolutional STDP filters + delta-rule readout in an active-learning loop on crops
    (module docstring)."""

    name = "conv_active"
    needs = frozenset({Capability.DENSE_LIF})
    summary = ("image track: bio-inspired active learning, shared STDP + WTA filters on crop "
               "patches, delta-rule readout")
    inputs = "images"
    params_type = ConvActiveParams

    def search_space(self) -> dict[str, Param]:
        space = ActiveLearning().search_space()
        del space["hidden"]
        return space | {
            "filters": Int(8, 24),
            "working_size": Fixed(16),
            "kernel": Fixed(5),
            "stride": Fixed(2),
            "grid": Fixed(2),
            "steps": Int(12, 24),
            "a_plus": Float(1e-3, 2e-2, log=True),
            "stdp_epochs": Fixed(1),
            "stdp_batch": Fixed(8),
        }

    def fit(self, train: Split, val: Split, params: ConvActiveParams, ctx: FitContext
            ) -> ConvActiveModel:
        p = params
        check_params(p)
        check_finite_params(p)  # a NaN gain: σ(NaN) spikes never, STDP and readout learn noise
        geometry = PatchGeometry.of(tuple(train.X.shape), p)
        steps = p.steps
        spec = NetworkSpec(sizes=(geometry.patch_inputs, p.filters), beta=p.beta,
                           threshold=1.0, reset="subtract", bias=True)
        backend = ctx.require_backend(self)
        backend.check_supported(spec)
        net = backend.build(spec, device=ctx.device, seed=ctx.seed)
        device = next(net.parameters()).device
        train_filters(net, train.X, geometry, p, device, ctx.seed)

        counts, _ = conv_hidden_counts(net, train.X, geometry, p, steps, device, ctx.seed)
        val_counts, _ = conv_hidden_counts(net, val.X, geometry, p, steps, device, ctx.seed + 1)
        model = ConvActiveModel(net, geometry, Readout(counts.shape[1]),
                                *pool_stats(counts, steps), p, device)
        fit_readout(model, counts, val_counts, train, val, p, ctx)  # fills in model
        model.info["geometry"] = dataclasses.asdict(geometry) | {"locations": geometry.side ** 2}
        return model


__all__ = ["PATTERNS", "ConvActiveLearning", "ConvActiveModel", "ConvActiveParams", "PatchGeometry",
           "conv_hidden_counts", "grid_sum", "patch_spikes", "train_filters", "unfold_patches"]
