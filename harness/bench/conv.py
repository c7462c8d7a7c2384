"""Convolutional engine benchmark (``spikebench bench --conv``): the train step of the
convolutional LIF network (:class:`~spikebench.backends.conv.ConvNetworkSpec`) on every backend
with a convolutional builder (:func:`~spikebench.backends.conv.conv_backends`), timed side by
side in one process against the product floor of that step.

Workload (defaults = :func:`~spikebench.backends.conv.conv_train_step`'s): input
``[T, B, C, S, S]`` Bernoulli(0.3) spikes (``density``), 1×64×64, T = 8, batch 16, convolutional
LIF stages of 8 and 16 channels (3×3 "same" convolutions, 2×2 max-pooling of the currents),
a dense LIF output layer of 2, the spec's default neuron, float32.

* **train**: forward over ``T``, cross-entropy on output spike counts, backward, Adam step: the
  same closure, fused Adam and turn-taking as the dense bench
  (:mod:`spikebench.harness.bench.engine`, whose timing core
  :func:`~spikebench.harness.bench.engine.time_variants` this module calls).
  Inference is not timed.
* **floor**: by analogy with the dense bench's floor (the matrix products the train step cannot
  avoid), the products of this network's train step: per convolutional stage the convolution
  over ``T·B`` images, its weight gradient and (above the first stage) its input gradient
  (``aten.convolution_backward``, as autograd calls it); per dense layer the input projection,
  weight gradient and input gradient. No LIF recurrence, pooling, loss or optimizer: what is
  left over is the engine's own cost.
* **peak_mb**, **rss_growth_mb**, **density**, compiled variants (``NAME+compile``): as in the
  dense bench; the density lists the input and every layer but the output layer.

Repeats are interleaved (one step of each backend in turn); ratios within a run are the robust
figure. CUDA is used when present unless ``device`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from spikebench.harness.bench.engine import (
    BLOCK,
    bench_device,
    neuron_fields,
    product_floor,
    spike_batch,
    time_variants,
    variant_names,
)
from spikebench.harness.bench.tables import format_table, repeats_text

#: What the conv floor is, as the printed header and table name it.
FLOOR_WHAT = "convolutions, their weight/input gradients and dense products of the train step"


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def conv_floor(spec: Any, batch: int, steps: int, device: Any) -> Callable[[], None]:
    """The products of the train step of ``spec`` over ``T·B`` images (module docstring)."""
    import torch
    import torch.nn.functional as F

    rows = batch * steps
    pad = spec.kernel // 2
    gen = torch.Generator(device="cpu").manual_seed(0)
    stages = []
    c_in = spec.in_channels
    for c, size in zip(spec.channels, spec.map_sizes(), strict=True):
        x = (torch.rand(rows, c_in, size, size, generator=gen) < 0.3).float().to(device)
        w = torch.randn(c, c_in, spec.kernel, spec.kernel, generator=gen).to(device)
        g = torch.randn(rows, c, size, size, generator=gen).to(device)
        stages.append((x, w, g))
        c_in = c
    dense = product_floor(spec.dense_sizes, batch, steps, device, first_input_grad=True)

    def run() -> None:
        for i, (x, w, g) in enumerate(stages):
            F.conv2d(x, w, padding=pad)
            torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [pad, pad], [1, 1], False,
                                                [0, 0], 1, [i > 0, True, False])
        dense()

    return run


def _version(backend: str) -> str:
    """The backend's version, or ``"-"`` for a conv builder registered without a backend."""
    from spikebench.backends import get_backend
    from spikebench.errors import SpikebenchError

    try:
        return get_backend(backend).version()
    except SpikebenchError:
        return "-"


def _layer_neurons(spec: Any) -> list[int]:
    """Neurons of every layer but the output layer: pooled maps, then the dense hidden widths."""
    maps = [c * (size // spec.pool) ** 2 for c, size in zip(spec.channels, spec.map_sizes(),
                                                             strict=True)]
    return maps + list(spec.dense_sizes[1:-1])


def run_conv_bench(backends: list[str] | None = None, *, batch: int = 16, steps: int = 8,
                   image_size: int = 64, in_channels: int = 1,
                   channels: Sequence[int] = (8, 16), outputs: int = 2, threads: int = 2,
                   repeats: int = 20, warmup: int = 3, device: str | None = None,
                   seed: int = 0, compile: Sequence[str] | None = None, density: float = 0.3,
                   block: int = BLOCK) -> dict[str, Any]:
    """Time the convolutional train step of ``backends`` (default: every backend with a conv
    builder) and of the compiled variants ``compile`` adds (as
    :func:`~spikebench.harness.bench.engine.variant_names`); ``device`` None: CUDA when present.

    Returns ``{"train": {name: {"median_ms", "min_ms", "max_ms", "peak_mb", "rss_growth_mb"
    [, "compile_s"]}}, "floor_ms", "floor": {...}, "density": [...], "workload", "versions",
    "machine", "skipped": {name: reason}}``.
    """
    from spikebench.backends.conv import ConvNetworkSpec, build_conv, conv_backends

    spec = ConvNetworkSpec(image_size=image_size, in_channels=in_channels,
                           channels=tuple(channels), outputs=outputs)
    default = ["custom"] + [b for b in conv_backends() if b != "custom"]
    with bench_device(device or default_device(), threads) as (dev, sync):
        def build(base: str) -> tuple[Any, str]:
            return build_conv(base, spec, device=dev, seed=seed), _version(base)

        shape = (steps, batch, in_channels, image_size, image_size)
        x, y = spike_batch(shape, outputs, density, seed, dev)
        result = time_variants(variant_names(backends, compile, default), build, x, y,
                               floor=conv_floor(spec, batch, steps, dev), sync=sync,
                               neurons=_layer_neurons(spec), warmup=warmup, repeats=repeats,
                               phases=("train",), block=block)
    result["workload"] = {"kind": "conv", "batch": batch, "steps": steps,
                          "image_size": image_size, "in_channels": in_channels,
                          "channels": list(spec.channels), "kernel": spec.kernel,
                          "pool": spec.pool, "outputs": outputs, "threads": threads,
                          "repeats": repeats, "block": block, "warmup": warmup,
                          "device": str(dev),
                          "input_density": density, "dtype": "float32",
                          "neuron": neuron_fields(spec), "floor": FLOOR_WHAT}
    return result


def format_conv_bench(result: dict[str, Any]) -> str:
    """The dense bench's table for the conv workload; the header names the floor."""
    w = result["workload"]
    net = "→".join(f"conv{c}" for c in w["channels"])
    header = (f"conv workload: batch {w['batch']}, {w['in_channels']}×{w['image_size']}×"
              f"{w['image_size']} → {net} (k{w['kernel']}, pool {w['pool']}) → {w['outputs']} "
              f"LIF, T={w['steps']}, {w['dtype']}, {w['device']}, {w['threads']} threads, "
              f"{repeats_text(w)}\nfloor = {FLOOR_WHAT} (no LIF, pooling or optimizer)")
    return format_table(result, header, "conv + dense products")


#: ``spikebench bench`` options of other workloads, refused with ``--conv``.
NOT_WITH_CONV = ("sweep", "extract", "study", "protocol", "throughput", "inputs", "hidden",
                 "trials", "rules")


def conv_option_problem(options: dict[str, Any]) -> str:
    """What is wrong with this combination of ``spikebench bench`` options (parsed, by
    attribute name) for the conv workload, or ``""``: ``--conv`` takes the train-step options
    only, and ``--image-size`` / ``--channels`` mean nothing without it."""
    if not options.get("conv"):
        stray = [o for o in ("image_size", "channels") if options.get(o) is not None]
        return f"--{stray[0].replace('_', '-')} needs --conv" if stray else ""
    clash = [o for o in NOT_WITH_CONV if options.get(o) not in (None, False)]
    if clash:
        return f"--conv cannot be combined with --{clash[0]}"
    if any(not 1 <= c <= 4096 for c in options.get("channels") or ()):
        return f"--channels: {options['channels']} must each be in [1, 4096]"
    return ""
