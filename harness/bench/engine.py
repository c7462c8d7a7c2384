"""Engine benchmark: the same surrogate-gradient train step and inference pass on every backend,
timed side by side in one process, against the dense-matmul floor of that step.

Workload (defaults = the study's typical network): input ``[T, B, F]`` Bernoulli(0.3) spikes
(``density``; the sweep adds sparse-input points, 10 % and 5 %, where the event-driven path
applies),
LIF layers ``F → hidden → outputs`` with the default :class:`NetworkSpec` neuron (β 0.9, θ 1,
subtract reset, fast-sigmoid surrogate), float32.

* **train**: forward over ``T``, cross-entropy on output spike counts, backward, and the
  rules' Adam step (:func:`spikebench.harness.optim.adam`: fused, one kernel over all
  parameters where this torch supports it, for every backend alike).
* **infer**: the forward pass under ``torch.no_grad()``.
* **floor**: the dense matrix products that train step cannot avoid at this shape: per layer the
  input projection ``[T·B, F_in] × [F_in, F_out]``, the weight gradient ``gIᵀ x`` and (above the
  first layer) the input gradient ``gI W``; timed in the same run with the same threads.
* **peak_mb**: the activation memory of the train step: MiB of distinct tensor storages that the
  forward pass saves for the backward pass (counted with ``torch.autograd.graph.
  saved_tensors_hooks``; parameters excluded). It is what grows with ``T × B × hidden`` and
  what limits batch size; deterministic, unlike process-level figures.
* **rss_growth_mb**: growth of the process's resident set during one train step (Linux
  ``VmHWM`` after a reset through ``/proc/self/clear_refs``, else the ``ru_maxrss`` delta).
  Often 0: the C allocator keeps freed memory of earlier steps, so only a step that needs more
  than any before shows; reported for completeness.

* **compiled variants** (``NAME+compile``, e.g. ``snntorch+compile``): the backend's network
  wrapped in ``torch.compile`` (inductor). Its first train and inference calls compile (minutes
  per shape for a framework's per-step loop); they are timed once as ``compile_s`` and are not
  part of the timed repeats, which start after them.
* **density**: spikes per neuron and step of the custom network's layers in the train step
  (input layer first): what decides its dense or event-driven products.

Repeats are interleaved (one step of each backend in turn) so that load from other processes on
a shared machine spreads over all backends instead of hitting one; ratios within a run are the
robust figure. Timings use ``time.perf_counter`` (CUDA: synchronised).

The timing core (:func:`time_variants`) serves every workload
(:mod:`spikebench.harness.bench.conv` times the convolutional network with it); the tables and
the regression check are in :mod:`spikebench.harness.bench.tables`.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

#: Sweep grid of :func:`sweep`.
SWEEP_STEPS: tuple[int, ...] = (25, 50, 100)
SWEEP_HIDDEN: tuple[int, ...] = (128, 256, 512)
#: Extra sweep points ``(T, hidden, input density)``: sparse input (event-driven products).
SWEEP_SPARSE: tuple[tuple[int, int, float], ...] = ((25, 512, 0.1), (25, 512, 0.05))


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure_peak_mb(fn: Callable[[], Any]) -> float | None:
    """Resident-set growth (MiB) while running ``fn`` once (see the module docstring)."""
    gc.collect()
    if _reset_peak():
        before = _rss_mb()
        fn()
        after = _peak_mb()
        if before is None or after is None:
            return None
        return round(max(after - before, 0.0), 2)
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # macOS reports bytes
    return round((after_kb - before_kb) / scale, 2)


def saved_tensor_mb(fn: Callable[[], Any], exclude: Sequence[Any] = ()) -> float:
    """MiB of distinct storages saved for backward while ``fn()`` runs (``exclude``: e.g. the
    parameters, which exist anyway)."""
    import torch

    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return round(sum(seen.values()) / 2**20, 3)


def _stats(samples: Sequence[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(samples), 3), "min_ms": round(min(samples), 3),
            "max_ms": round(max(samples), 3)}


def _machine() -> dict[str, Any]:
    """The machine as :func:`spikebench.provenance.machine` describes it (one definition)."""
    from spikebench.provenance import machine

    return machine()


def product_floor(sizes: Sequence[int], batch: int, steps: int, device: Any, *,
                  first_input_grad: bool = False) -> Callable[[], None]:
    """The dense products of a train step through layers ``sizes`` over ``T·B`` rows: per
    layer the input projection, the weight gradient and the input gradient (of the first layer
    only with ``first_input_grad``: the network input needs none, a dense tail's input does)."""
    import torch

    rows = batch * steps
    gen = torch.Generator(device="cpu").manual_seed(0)
    xs = [(torch.rand(rows, a, generator=gen) < 0.3).float().to(device) for a in sizes[:-1]]
    ws = [torch.randn(b, a, generator=gen).to(device) for a, b in itertools.pairwise(sizes)]
    gs = [torch.randn(rows, b, generator=gen).to(device) for b in sizes[1:]]

    def run() -> None:
        for i, (x, w, g) in enumerate(zip(xs, ws, gs)):
            x.mm(w.t())  # forward input projection
            g.t().mm(x)  # weight gradient
            if i or first_input_grad:
                g.mm(w)  # input gradient

    return run


def _layer_density(net: Any, x: Any, neurons: Sequence[int]) -> list[float]:
    """Spikes per neuron and step of ``x`` and of every layer but the last of ``net``
    (``neurons``: the widths of those layers)."""
    import torch

    with torch.no_grad():
        counts = [float(c) for c in net(x).layer_spike_counts]
    rows = x.shape[0] * x.shape[1]
    return [round(float(x.mean()), 4)] + [round(c / (rows * n), 4)
                                          for c, n in zip(counts[:-1], neurons)]


#: Consecutive calls of each variant per round (the first untimed): see :func:`_time_interleaved`.
BLOCK = 5


def _time_interleaved(timed: dict[str, Callable[[], None]], *, warmup: int, repeats: int,
                      block: int = 1) -> dict[str, list[float]]:
    """``warmup`` untimed calls of each function, then ``repeats`` rounds calling each in turn
    (each round in an order rotated by one); returns the wall times in ms per key.

    ``block > 1``: each turn is ``block`` consecutive calls of the function, the first untimed
    and the others timed. A train step in a trial follows the previous step of the same network,
    with its buffers and weights still in the caches; a step timed right after another variant
    finds them evicted, a cost no trial pays (``examples/sampling_ab.py`` at the default
    workload: custom 2.73 ms call by call against 2.22 back to back, SpikingJelly 13.97 against
    12.27, snnTorch 23.24 against 23.38). Interleaving by rounds still spreads the machine's
    drift over every variant alike."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    for fn in timed.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in timed}
    items = list(timed.items())
    for r in range(repeats):
        # each round starts one place further on: no function always runs right after the
        # same one (a large product evicts the caches the next step would find warm)
        for key, fn in items[r % len(items):] + items[: r % len(items)]:
            if block > 1:
                fn()  # refills what the previous variant evicted; untimed
            for _ in range(max(block - 1, 1)):
                t0 = time.perf_counter()
                fn()
                samples[key].append((time.perf_counter() - t0) * 1e3)
    return samples


COMPILE_SUFFIX = "+compile"


def make_optimizer(params: Any) -> Any:
    """The rules' Adam (:func:`spikebench.harness.optim.adam`) at ``lr = 1e-3``."""
    from spikebench.harness.optim import adam

    return adam(params, lr=1e-3)


def variant_names(backends: list[str] | None, compile: Sequence[str] | None,
                  default: Sequence[str] | None = None) -> list[str]:
    """The backends to time: ``backends`` (default ``default``, else every installed one) plus
    ``NAME+compile`` for every name in ``compile`` (empty sequence: every listed backend except
    custom)."""
    from spikebench.backends import available_backends

    names = list(backends or default or available_backends())
    if compile is not None:
        peers = list(compile) or [n for n in names if n != "custom"
                                  and not n.endswith(COMPILE_SUFFIX)]
        names += [f"{n}{COMPILE_SUFFIX}" for n in peers if f"{n}{COMPILE_SUFFIX}" not in names]
    return names


def _first_calls(fns: Sequence[Callable[[], None]]) -> float:
    """Seconds of the first call of each of ``fns`` (compilation, for compiled variants)."""
    started = time.perf_counter()
    for fn in fns:
        fn()
    return round(time.perf_counter() - started, 2)


#: Per-function graph variants dynamo may keep (its default, 8, is below what a framework's
#: per-layer neuron calls need in train + no-grad mode: past it, calls silently run eager).
RECOMPILE_LIMIT = 64


def _compiled(net: Any) -> Any:
    """``torch.compile(net)`` with static shapes and room for every layer's graph variant."""
    import torch
    import torch._dynamo

    for key in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, max(getattr(torch._dynamo.config, key),
                                                   RECOMPILE_LIMIT))
    return torch.compile(net, dynamic=False)


class _CompileFailed(RuntimeError):
    """``torch.compile`` of a variant failed (the variant is skipped with the reason)."""


#: ``build(backend) -> (network, backend version)``: how a workload builds its network.
Builder = Callable[[str], tuple[Any, str]]


def _make_case(name: str, build: Builder, x: Any, y: Any, sync: Callable[[], None]
               ) -> dict[str, Any]:
    """Network (from ``build``), optimizer and the timed closures of backend variant ``name``;
    a compiled variant's first calls (its compilation) are run and timed here."""
    import torch
    import torch.nn.functional as F

    base = name.removesuffix(COMPILE_SUFFIX)
    net, version = build(base)
    params = list(net.parameters())
    opt = make_optimizer(params)
    run = _compiled(net) if name != base else net

    def train() -> None:
        out = run(x)
        loss = F.cross_entropy(out.spikes.sum(0), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    def forward_loss() -> None:
        F.cross_entropy(run(x).spikes.sum(0), y)

    def infer() -> None:
        with torch.no_grad():
            run(x)
        sync()

    seconds = None
    if name != base:
        try:
            seconds = _first_calls((train, infer, train, infer))  # 2nd: grad-state guards
        except Exception as exc:  # inductor failures are many and varied
            raise _CompileFailed(f"torch.compile failed: {type(exc).__name__}: "
                                 f"{str(exc)[:240]}") from exc
    return {"base": base, "version": version, "net": net, "params": params,
            "train": train, "infer": infer, "forward_loss": forward_loss,
            "compile_s": seconds}


@contextlib.contextmanager
def bench_device(device: str, threads: int) -> Iterator[tuple[Any, Callable[[], None]]]:
    """``(torch.device, sync)`` with torch limited to ``threads`` threads (restored after);
    ``sync`` waits for queued CUDA work so that timings cover it."""
    import torch

    from spikebench.errors import BackendError

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise BackendError(f"bench device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        from spikebench.harness.plan import cuda_problem

        raise BackendError(f"bench --device {device!r}: {cuda_problem()}; or use --device cpu")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield dev, (torch.cuda.synchronize if dev.type == "cuda" else (lambda: None))
    finally:
        torch.set_num_threads(old_threads)


def spike_batch(shape: Sequence[int], outputs: int, density: float, seed: int, device: Any
                ) -> tuple[Any, Any]:
    """Bernoulli(``density``) input spikes of ``shape`` (``[T, B, ...]``) and ``B`` labels."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = (torch.rand(*shape, generator=gen) < density).float().to(device)
    return x, torch.randint(0, outputs, (shape[1],), generator=gen).to(device)


def neuron_fields(spec: Any) -> dict[str, Any]:
    """The neuron parameters of a (dense or convolutional) spec, for the workload record."""
    return {"beta": spec.beta, "threshold": spec.threshold, "reset": spec.reset,
            "surrogate": spec.surrogate}


def time_variants(names: Sequence[str], build: Builder, x: Any, y: Any, *,
                  floor: Callable[[], None], sync: Callable[[], None], neurons: Sequence[int],
                  warmup: int, repeats: int, phases: Sequence[str] = ("train", "infer"),
                  block: int = BLOCK) -> dict[str, Any]:
    """The timing core of every workload: build each variant of ``names`` with ``build``
    (failures are skipped with the reason), then time its ``phases`` and ``floor`` in
    interleaved repeats of ``block`` calls each (:func:`_time_interleaved`). ``neurons``:
    widths of the layers whose spike density is reported.

    Returns ``{phase: {name: stats}, "floor", "floor_ms", "density", "versions", "machine",
    "skipped"}``; the train rows add ``peak_mb``, ``rss_growth_mb`` and ``compile_s``."""
    import torch

    from spikebench.errors import SpikebenchError

    cases: dict[str, dict[str, Any]] = {}
    versions: dict[str, str] = {"torch": torch.__version__}
    skipped: dict[str, str] = {}
    layer_density: list[float] = []
    for name in names:
        try:
            cases[name] = case = _make_case(name, build, x, y, sync)
        except (SpikebenchError, ImportError, _CompileFailed) as exc:
            skipped[name] = str(exc)
            continue
        versions[case["base"]] = case["version"]
        case["peak_mb"] = saved_tensor_mb(case["forward_loss"], exclude=case["params"])
        if name == "custom":
            layer_density = _layer_density(case["net"], x, neurons)

    def floor_step() -> None:
        floor()
        sync()

    timed: dict[str, Callable[[], None]] = {"__floor__": floor_step}
    for name, case in cases.items():
        timed.update({f"{phase}:{name}": case[phase] for phase in phases})
    samples = _time_interleaved(timed, warmup=warmup, repeats=repeats, block=block)
    result: dict[str, Any] = {phase: {} for phase in phases}
    for name, case in cases.items():
        for phase in phases:
            result[phase][name] = _stats(samples[f"{phase}:{name}"])
        result["train"][name].update(peak_mb=case["peak_mb"],
                                     rss_growth_mb=measure_peak_mb(case["train"]))
        if case["compile_s"] is not None:
            result["train"][name]["compile_s"] = case["compile_s"]
    result["floor"] = _stats(samples["__floor__"])
    result["floor_ms"] = result["floor"]["median_ms"]
    result.update(density=layer_density, versions=versions, machine=_machine(),
                  skipped=skipped)
    return result


def run_bench(backends: list[str] | None = None, *, batch: int = 128, inputs: int = 64,
              hidden: int = 128, outputs: int = 2, steps: int = 25, threads: int = 2,
              repeats: int = 20, warmup: int = 3, device: str = "cpu", seed: int = 0,
              compile: Sequence[str] | None = None, density: float = 0.3,
              block: int = BLOCK) -> dict[str, Any]:
    """Time train step and inference of ``backends`` (default: every installed one) and of the
    compiled variants :func:`variant_names` adds for ``compile``.

    Returns ``{"train": {name: {"median_ms", "min_ms", "max_ms", "peak_mb", "rss_growth_mb"
    [, "compile_s"]}}, "infer": {...}, "floor_ms", "floor": {...}, "density": [...],
    "workload", "versions", "machine", "skipped": {name: reason}}``.
    """
    from spikebench.backends import NetworkSpec, get_backend

    spec = NetworkSpec(sizes=(inputs, hidden, outputs))
    with bench_device(device, threads) as (dev, sync):
        def build(base: str) -> tuple[Any, str]:
            backend = get_backend(base)
            return backend.build(spec, device=dev, seed=seed), backend.version()

        x, y = spike_batch((steps, batch, inputs), outputs, density, seed, dev)
        result = time_variants(variant_names(backends, compile), build, x, y,
                               floor=product_floor(spec.sizes, batch, steps, dev), sync=sync,
                               neurons=spec.sizes[1:-1], warmup=warmup, repeats=repeats,
                               block=block)
    result["workload"] = {"batch": batch, "inputs": inputs, "hidden": hidden,
                          "outputs": outputs, "steps": steps, "threads": threads,
                          "repeats": repeats, "block": block, "warmup": warmup,
                          "device": str(dev),
                          "input_density": density, "dtype": "float32",
                          "neuron": neuron_fields(spec)}
    return result


def sweep(backends: list[str] | None = None, *, steps_grid: Sequence[int] = SWEEP_STEPS,
          hidden_grid: Sequence[int] = SWEEP_HIDDEN,
          sparse: Sequence[tuple[int, int, float]] = SWEEP_SPARSE, **kwargs: Any
          ) -> list[dict[str, Any]]:
    """:func:`run_bench` over ``T`` in ``steps_grid`` (at the given ``hidden``), over
    ``hidden`` in ``hidden_grid`` (at the given ``steps``) and at the ``sparse`` points
    ``(T, hidden, input density)``; ``kwargs`` go to :func:`run_bench`."""
    base_steps = int(kwargs.pop("steps", 25))
    base_hidden = int(kwargs.pop("hidden", 128))
    density = float(kwargs.pop("density", 0.3))
    points = [(t, base_hidden, density) for t in steps_grid]
    points += [(base_steps, h, density) for h in hidden_grid
               if (base_steps, h, density) not in points]
    points += [p for p in sparse if p not in points]
    return [run_bench(backends, steps=t, hidden=h, density=d, **kwargs) for t, h, d in points]
