"""Backend conformance, training part: a network that offers its own fused training pass
(``forward_backward``, see :func:`spikebench.backends.base.forward_backward`) must give what
``loss.backward()`` gives. Part of :func:`spikebench.backends.conformance.check_backend`."""

from __future__ import annotations

import torch

from spikebench.backends.base import Backend, autograd_forward_backward
from spikebench.backends.conformance_tempotron import _fail, _resolve


def check_forward_backward(backend: Backend | str) -> None:
    """A network's own ``forward_backward`` (the optional fused training pass of
    :func:`spikebench.backends.base.forward_backward`) gives the outputs, loss and parameter
    gradients of ``loss.backward()`` (float64, relative tolerance ``GRAD_RTOL``), and
    accumulates into existing gradients as ``loss.backward()`` does."""
    from spikebench.backends.conformance import (
        GRAD_RTOL,
        _supported_spec,
        random_weights,
        spiking_input,
    )

    b = _resolve(backend)
    spec = _supported_spec(b)
    probe = b.build(spec, dtype=torch.float64, seed=0)
    if not callable(getattr(probe, "forward_backward", None)) or "surrogate" not in b.rules:
        return
    x = spiking_input(10, 4, spec.sizes[0], seed=3)
    gen = torch.Generator().manual_seed(5)
    cs = torch.randn(10, 4, spec.sizes[-1], generator=gen, dtype=torch.float64)
    cm = torch.randn(10, 4, spec.sizes[-1], generator=gen, dtype=torch.float64)

    def loss_fn(spikes: torch.Tensor, membrane: torch.Tensor) -> torch.Tensor:
        return ((spikes * cs).sum() + 0.1 * (membrane * cm).sum()
                + 0.05 * spikes.sum(0).square().sum())

    nets = []
    for _ in range(2):
        net = b.build(spec, dtype=torch.float64, seed=0)
        net.set_weights(random_weights(spec, seed=2))
        nets.append(net)
    fused, plain = nets
    results = [fused.forward_backward(x, loss_fn), autograd_forward_backward(plain, x, loss_fn)]
    (out0, loss0), (out1, loss1) = results
    if not (torch.equal(out0.spikes, out1.spikes)
            and torch.allclose(out0.membrane, out1.membrane)):
        _fail(f"{b.name}: forward_backward's outputs differ from the network's forward")
    if not torch.allclose(loss0, loss1, rtol=GRAD_RTOL):
        _fail(f"{b.name}: forward_backward's loss {float(loss0)} differs from {float(loss1)}")
    for rounds in (1, 2):
        for (name, p0), p1 in zip(fused.named_parameters(), plain.parameters()):
            if p0.grad is None or not torch.allclose(p0.grad, p1.grad, rtol=GRAD_RTOL,
                                                     atol=1e-12):
                _fail(f"{b.name}: forward_backward's gradient of {name} differs from "
                      f"loss.backward()'s" + (" after accumulating a second pass"
                                              if rounds == 2 else ""))
        fused.forward_backward(x, loss_fn)
        autograd_forward_backward(plain, x, loss_fn)
