"""Surrogate-gradient BPTT of a convolutional SNN on the liver crops (the image track).

The network is any backend's convolutional LIF network (:class:`~spikebench.backends.conv.
ConvNetworkSpec`: two convolutional stages, max-pooled currents, a dense LIF read-out of two
neurons), fed the standardised crop ``x`` (``[B, 1, S, S]``) through the same encoders as the
feature rules (:mod:`spikebench.harness.encoding`: ``direct`` x[t] = g·x, ``rate``
x[t] ~ Bernoulli(σ(g·x))). Loss and read-out are those of :mod:`spikebench.harness.rules.
surrogate` on the output layer's spikes ``S[t]`` and charge ``H[t]``:

- ``count``:    CE(Σ_t S[t], y)
- ``membrane``: CE((1/T) Σ_t H[t], y)

class-weighted (inverse frequency), Adam, early stopping on the validation score.
``P(lesion)`` is the softmax of the logits the loss reads.

Divergence: a NaN pixel, gain or weight makes a charge NaN, and a NaN charge never crosses the
threshold, so it stays inside the layer it starts in (silent neurons downstream) while the
read-out and the loss may stay finite. The fit therefore stops with
:class:`~spikebench.harness.rules.base.DivergedError` on a non-finite hyper-parameter, input
pixel, loss or membrane, and on non-finite parameters after any optimiser step (where NaN
gradients of an early layer land).

Costs per sample: every input event of layer ``l`` reaches ``fan_out_l`` synapses
(``C_out k²`` for a convolution, counted as if away from the border; the next width for a
dense layer); events from spikes are accumulates (ACs), the real-valued pixels of a ``direct``
code are multiply-accumulates (MACs), as for the dense surrogate rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from spikebench.backends.capabilities import Capability
from spikebench.backends.specs import Reset
from spikebench.harness.encoding import encode
from spikebench.harness.optim import adam
from spikebench.harness.rules.base import (
    DivergedError,
    FitContext,
    Rule,
    Split,
    TrainedModel,
    class_weights,
)
from spikebench.harness.rules.batches import read_rows, row_chunks
from spikebench.harness.rules.checks import check_finite_params, check_parameters, check_training
from spikebench.harness.rules.early_stopping import fit_epochs
from spikebench.harness.rules.surrogate import LIF_SPACE, LIFParams, logits_of, spike_loss
from spikebench.harness.space import Categorical, Fixed, Float, Int, Param

IMAGE_ENCODINGS = ("direct", "rate")
IMAGE_LOSSES = ("count", "membrane")


@dataclasses.dataclass(frozen=True)
class ConvNetParams(LIFParams):
    """The convolutional LIF network, its input code and its optimiser: what
    :class:`ConvSurrogate` shares with the convolutional attention-MIL rule
    (:mod:`~spikebench.harness.rules.conv_mil`)."""

    channels: int = 8
    hidden: int = 32
    steps: int = 8
    lr: float = 5e-3
    encoding: str = "direct"
    gain: float = 1.0
    reset: Reset = "subtract"
    epochs: int = 15
    patience: int = 4
    weight_decay: float = 1e-4


@dataclasses.dataclass(frozen=True)
class ConvSurrogateParams(ConvNetParams):
    """The parameters of :class:`ConvSurrogate` (its :meth:`~ConvSurrogate.search_space`)."""

    loss: str = "count"
    batch_size: int = 32


class ConvSurrogateModel(TrainedModel):
    """A trained convolutional LIF network, its encoder settings and the read-out ``loss``
    whose logits give ``P(lesion)``."""

    def __init__(self, net: Any, params: ConvNetParams, device: Any, info: dict, *,
                 loss: str) -> None:
        self.net, self.params, self.device, self.info = net, params, device, info
        self.loss = loss
        self.train_steps = params.steps

    def _run(self, X: Any, steps: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Logits ``[n, 2]``, per-layer spike counts and input events (``steps`` steps)."""
        p, n = self.params, len(X)
        gen = torch.Generator(device=self.device).manual_seed(0)
        logits, counts, events = [], None, 0.0
        with torch.no_grad():
            for index in row_chunks(n):
                xb = torch.as_tensor(read_rows(X, index), device=self.device)
                enc = encode_crops(xb, p, steps, gen)
                out = self.net(enc)
                logits.append(logits_of(out.spikes, out.membrane, self.loss))
                c = torch.stack([torch.as_tensor(v).float() for v in out.layer_spike_counts])
                counts = c if counts is None else counts + c
                events += float((enc != 0).sum())
        if not logits:
            return torch.zeros(0, 2), torch.zeros(self.net.spec.n_layers), 0.0
        assert counts is not None
        return torch.cat(logits), counts, events

    def predict_proba(self, X: Any, *, steps: int | None = None) -> np.ndarray:
        logits, _, _ = self._run(X, steps or self.train_steps)
        return torch.softmax(logits.double(), -1)[:, 1].cpu().numpy()

    def activity(self, X: Any, *, steps: int | None = None) -> dict[str, float]:
        """Cost counters per sample (module docstring)."""
        _, counts, events = self._run(X, steps or self.train_steps)
        fan = self.net.spec.fan_outs()
        n = max(len(X), 1)
        first = events * fan[0]
        deeper = sum(float(c) * f for c, f in zip(counts[:-1], fan[1:], strict=True))
        direct = self.params.encoding == "direct"
        acs = deeper + (0.0 if direct else first)
        macs = first if direct else 0.0
        return {"spikes_per_sample": float(counts.sum()) / n, "acs_per_sample": acs / n,
                "macs_per_sample": macs / n, "synops_per_sample": (acs + macs) / n}


def conv_spec(X: Any, p: ConvNetParams) -> Any:
    """The :class:`~spikebench.backends.conv.ConvNetworkSpec` of parameters ``p`` for crops
    shaped like ``X`` (``[n, C, S, S]``)."""
    from spikebench.backends.conv import ConvNetworkSpec

    return ConvNetworkSpec(
        image_size=int(X.shape[-1]), in_channels=int(X.shape[1]),
        channels=(p.channels, 2 * p.channels), hidden=(p.hidden,), beta=p.beta,
        threshold=p.threshold, surrogate=p.surrogate, slope=p.slope, reset=p.reset)


class ConvSurrogate(Rule[ConvSurrogateParams]):
    """Surrogate-gradient BPTT of a convolutional SNN on crops (module docstring)."""

    name = "conv_surrogate"
    needs = frozenset({Capability.CONV_LIF, Capability.SURROGATE_GRADIENTS})
    summary = "image track: convolutional SNN, surrogate-gradient BPTT on liver crops"
    inputs = "images"
    params_type = ConvSurrogateParams

    def search_space(self) -> dict[str, Param]:
        return {
            "channels": Int(4, 16, log=True),
            "hidden": Int(16, 64, log=True),
            "steps": Int(4, 12),
            "lr": Float(1e-3, 2e-2, log=True),
            **LIF_SPACE,
            "encoding": Categorical(IMAGE_ENCODINGS),
            "gain": Fixed(1.0),
            "loss": Categorical(IMAGE_LOSSES),
            "reset": Fixed("subtract"),
            "batch_size": Fixed(32),
            "epochs": Fixed(15),
            "patience": Fixed(4),
            "weight_decay": Fixed(1e-4),
        }

    def fit(self, train: Split, val: Split, params: ConvSurrogateParams, ctx: FitContext
            ) -> ConvSurrogateModel:
        p = params
        check_finite_params(p)
        if p.encoding not in IMAGE_ENCODINGS or p.loss not in IMAGE_LOSSES:
            raise ValueError(f"encoding must be one of {IMAGE_ENCODINGS} and loss one of "
                             f"{IMAGE_LOSSES}, got {p.encoding!r}, {p.loss!r}")
        backend = ctx.require_backend(self)
        spec = conv_spec(train.X, p)
        net = backend.build_conv(spec, device=ctx.device, seed=ctx.seed)
        device = next(net.parameters()).device
        y_all = torch.as_tensor(train.y, dtype=torch.long, device=device)
        weight = torch.as_tensor(class_weights(train.y), device=device)
        opt = adam(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        gen = torch.Generator(device=device).manual_seed(ctx.seed)
        rng = np.random.default_rng(ctx.seed)
        model = ConvSurrogateModel(net, p, device, info={}, loss=p.loss)
        steps, batch = p.steps, p.batch_size

        def train_epoch(epoch: int) -> None:
            order = rng.permutation(len(train))
            for start in range(0, len(order), batch):
                idx = order[start:start + batch]
                xb = torch.as_tensor(read_rows(train.X, idx), device=device)
                out = net(encode_crops(xb, p, steps, gen))
                loss = spike_loss(out.spikes, out.membrane, y_all[idx], p.loss,
                                  weight=weight, lam=0.0, phi=1.0)
                check_training(loss, out.membrane, epoch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                check_parameters(net, epoch)

        epochs, best = fit_epochs(
            net, epochs=p.epochs, patience=p.patience, train_epoch=train_epoch,
            score=lambda: ctx.score_validation(model.predict_proba(val.X)),
            report=ctx.report_epoch)
        model.info = {"epochs": epochs, "labels_used": len(train), "best_val": best,
                      "conv_spec": str(spec)}
        return model


def encode_crops(xb: torch.Tensor, p: ConvNetParams, steps: int,
                 generator: torch.Generator) -> torch.Tensor:
    """The ``[T, B, C, S, S]`` input of float crops ``xb`` under ``p``'s encoder;
    :class:`DivergedError` for NaN/inf pixels (one ``isfinite`` over the batch), which no
    later check would see (module docstring)."""
    finite = torch.isfinite(xb)
    if not bool(finite.all()):
        raise DivergedError(f"non-finite input: {int((~finite).sum())} NaN/inf pixels in a "
                            f"batch of {len(xb)} crops")
    return encode(xb, p.encoding, steps, gain=p.gain, generator=generator)

