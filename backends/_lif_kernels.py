"""Fused C++ CPU kernels for the LIF engine of :mod:`spikebench.backends.custom`.

The TorchScript step loops of :mod:`~spikebench.backends.custom` issue two or three tiny ATen ops
per time step (dispatch-bound) and the backward pass makes about eight passes over ``[T, B, N]``
tensors. ``lif_kernels.cpp`` (next to this file) does each in one pass over the neurons, with the
time loop per block of neurons and the neuron loop innermost, parallel over neuron blocks with
``at::parallel_for``. Its results equal the TorchScript path bit for bit (same roundings and
fused multiply-adds as ATen's CPU kernels; ``tests/backends/test_custom_fused.py`` checks it).

The source is compiled on first use (never at import) with ``torch.utils.cpp_extension.load``
into torch's extension cache (``~/.cache/torch_extensions`` or ``$TORCH_EXTENSIONS_DIR``; one
build per torch version, source content and install path) under a bounded, self-healing file
lock (:mod:`spikebench.backends._build_lock`: concurrent processes build it once, a build killed
mid-way never blocks later ones) and registered as
``torch.ops.spikebench_lif``. :func:`usable` says whether a tensor can take the fused path; it
is ``False`` — and the caller keeps to the TorchScript path — for CUDA tensors, dtypes other
than float32/float64, with ``SPIKEBENCH_NO_CPP_KERNELS=1``, on CPUs/platforms where the
reference rounding is not reproduced (x86-64 with AVX2+FMA only), and when the build or load
fails for any reason (no compiler, no ninja, a compile error). Each reason is logged once on the
``spikebench`` logger; a failed build is not retried within the process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from spikebench.backends import _build_lock

ENV_DISABLE = "SPIKEBENCH_NO_CPP_KERNELS"
SOURCE = Path(__file__).with_name("lif_kernels.cpp")
#: Every C++ source of the library (the event-driven products and the whole-network passes live
#: in their own files) and the header they share.
SOURCES = (SOURCE, Path(__file__).with_name("event_kernels.cpp"),
           Path(__file__).with_name("network_kernels.cpp"))
HEADERS = (Path(__file__).with_name("lif_kernels.h"),)
SURROGATE_CODES = {"fast_sigmoid": 0, "arctan": 1, "sigmoid": 2}

_log = logging.getLogger("spikebench")
_lock = threading.Lock()
_ops: Any = None  # torch.ops.spikebench_lif once loaded
_forward: Any = None  # its overloads, looked up once (no per-call overload resolution)
_backward: Any = None
_events: Any = None  # (binary_density, event_forward_, event_weight_grad_) overloads
_network: Any = None  # (network_forward, network_backward, network_clear) overloads
_failure: str | None = None  # why the kernels are unavailable (set once, never retried)
_env_logged = False
_DTYPES = (torch.float32, torch.float64)


def _unsupported_platform() -> str | None:
    """Why this machine cannot reproduce the reference rounding, or ``None``.

    ATen's vectorised CPU kernels use fused multiply-adds for ``add_(alpha=)``/``addcmul_``
    only with the AVX2/AVX512 kernels on x86-64; the C++ kernels replicate exactly that.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"untested CPU architecture {platform.machine()!r}"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return f"ATen CPU capability {capability} (needs AVX2 or AVX512)"
    return None


def _extension_name() -> str:
    """Build name: distinct per torch version (a cached build is only valid for its headers),
    per content of ``lif_kernels.cpp`` and per install location, so that two installs (or two
    versions of the source) never rebuild over each other's cached library."""
    digest = hashlib.sha256()
    for source in (SOURCE, *SOURCES[1:], *HEADERS):
        digest.update(source.read_bytes())
    digest.update(str(SOURCE.resolve()).encode())
    return ("spikebench_lif_avx2_torch" + re.sub(r"\W", "_", torch.__version__) + "_"
            + digest.hexdigest()[:12])


def _build_directory(name: str) -> Path:
    """Absolute build directory of ``name`` in torch's extension cache
    (``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions/<py/torch tag>``)."""
    from torch.utils import cpp_extension

    try:  # private torch API (the directory load() would pick)
        path = cpp_extension._get_build_directory(name, verbose=False)
    except Exception:  # pragma: no cover - torch moved it
        root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.expanduser(
            "~/.cache/torch_extensions")
        path = os.path.join(root, name)
    return Path(os.path.abspath(path))


#: A build lock older than this is stale (a build takes seconds; the holder was killed).
STALE_LOCK_SECONDS = _build_lock.STALE_LOCK_SECONDS
remove_stale_lock = _build_lock.remove_stale_lock


def _build() -> Any:
    """Compile (or reuse the cached build) and load the kernels; returns the ops namespace."""
    from torch.utils import cpp_extension

    name = _extension_name()
    build_dir = _build_directory(name)
    remove_stale_lock(build_dir)

    # torch's compiler-ABI notes (a warning or a log record) would add noise; the one line that
    # load() logs on failure says enough.
    torch_log = logging.getLogger("torch.utils.cpp_extension")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), _build_lock.build_lock(build_dir):
            warnings.simplefilter("ignore")
            cpp_extension.load(
                name=name,
                build_directory=str(build_dir),
                sources=[str(SOURCE), *(str(p) for p in SOURCES[1:])],
                extra_cflags=["-O3", "-ffp-contract=off", "-fopenmp", "-mavx2", "-mfma"],
                extra_ldflags=["-fopenmp"],
                is_python_module=False,
                verbose=False,
            )
    finally:
        torch_log.setLevel(level)
    return torch.ops.spikebench_lif


def _summary(exc: Exception) -> str:
    """One line for the log: the exception's first line, plus the compiler's first error line
    (a failed build's message starts with the long command line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    head = lines[0][:160] if lines else ""
    error = next((line for line in lines[1:] if re.search(
        r"error|not found|no such file|cannot|fatal", line, re.IGNORECASE)), None)
    text = f"{type(exc).__name__}: {head}"
    return f"{text} ... {error[:200]}" if error else text


def load() -> Any:
    """``torch.ops.spikebench_lif`` after building/loading it once; ``None`` if unavailable.

    Thread-safe; the first caller builds (seconds, once per machine and torch version: later
    processes load the cached library), the others wait for it. A failure is remembered: no
    second attempt in this process.
    """
    global _ops, _failure, _forward, _backward, _events, _network
    if _ops is not None or _failure is not None:
        return _ops
    with _lock:
        if _ops is not None or _failure is not None:
            return _ops
        reason = _unsupported_platform()
        if reason is not None:
            _failure = reason
            _log.info("spikebench: fused C++ LIF kernels not used (%s); using the TorchScript "
                      "step loops", reason)
            return None
        start = time.perf_counter()
        try:
            ops = _build()
            forward, backward = ops.forward_.default, ops.backward_.default
            events = (ops.binary_density.default, ops.event_forward_.default,
                      ops.event_weight_grad_.default)
            network = (ops.network_forward.default, ops.network_backward.default,
                       ops.network_clear.default)
        except Exception as exc:  # no compiler, ninja, build error, lock timeout: never raise
            _failure = f"build failed: {_summary(exc)}"
            _log.debug("spikebench: C++ LIF kernel build error", exc_info=True)
            _log.warning("spikebench: fused C++ LIF kernels unavailable (%s); using the "
                         "TorchScript step loops", _failure)
            return None
        _log.info("spikebench: fused C++ LIF kernels ready (%.1f s to build or load)",
                  time.perf_counter() - start)
        _forward, _backward, _events, _network, _ops = forward, backward, events, network, ops
        return _ops


def unavailable_reason() -> str | None:
    """Why the fused kernels cannot be used on this machine/process (loading them if needed)."""
    if _disabled_by_env():
        return f"disabled by {ENV_DISABLE}"
    load()
    return _failure


def _disabled_by_env() -> bool:
    global _env_logged
    if os.environ.get(ENV_DISABLE, "").strip() in ("", "0"):
        return False
    if not _env_logged:
        _env_logged = True
        _log.info("spikebench: fused C++ LIF kernels disabled by %s", ENV_DISABLE)
    return True


def usable(charge: torch.Tensor) -> bool:
    """Whether the fused kernels take ``charge``: a contiguous float32/float64 CPU tensor, not
    disabled by the environment, and the kernels built (building them on the first call)."""
    if charge.device.type != "cpu" or charge.dtype not in _DTYPES or not charge.is_contiguous():
        return False
    if _disabled_by_env():
        return False
    return load() is not None


def forward_(charge: torch.Tensor, spikes: torch.Tensor, beta: float, threshold: float,
             reset: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The LIF recurrence in place over ``charge`` (``I`` → ``H``), spikes into ``spikes``;
    returns the number of spikes (0-d, ``charge``'s dtype), counted on the way. With ``bias``
    (``[N]``, ``charge``'s last dimension), ``charge`` holds ``x Wᵀ`` and ``I = charge + bias``
    is formed on the way (one rounding, as ``charge.add_(bias)`` would).

    Same contract as ``custom._recurrence_py`` (``reset``: 0 subtract, 1 zero, 2 none); call
    only after :func:`usable` returned ``True`` for ``charge``. The count is exact, so it equals
    ``spikes.sum()`` whenever that is exact (fewer than 2**24 spikes in float32).
    """
    return _forward(charge, spikes, bias, beta, threshold, reset)


def backward_usable(charge: torch.Tensor, grad_spikes: torch.Tensor | None,
                    grad_charge: torch.Tensor | None, out: torch.Tensor, surrogate: str) -> bool:
    """Whether :func:`backward_` takes these arguments: a surrogate it implements, a contiguous
    ``out``, gradients of ``charge``'s dtype, device and shape (any strides), and :func:`usable`
    for ``charge`` (building the kernels on the first call)."""
    return (surrogate in SURROGATE_CODES and out.is_contiguous()
            and all(g is None or (g.dtype == charge.dtype and g.device == charge.device
                                  and g.shape == charge.shape)
                    for g in (grad_spikes, grad_charge, out))
            and usable(charge))


def backward_(charge: torch.Tensor, grad_spikes: torch.Tensor | None,
              grad_charge: torch.Tensor | None, out: torch.Tensor, beta: float, threshold: float,
              reset: int, surrogate: str, slope: float) -> None:
    """``dL/dI`` into ``out`` (contiguous, ``charge``'s shape) in one fused pass; the contract of
    ``custom.lif_backward_``. Call only after :func:`backward_usable` returned ``True``."""
    _backward(charge, grad_spikes, grad_charge, out, beta, threshold, reset,
              SURROGATE_CODES[surrogate], slope)


def binary_density(x: torch.Tensor) -> float:
    """Fraction of ones in ``x`` if every value is exactly 0 or 1, else ``-1`` (one pass).

    Call only after :func:`usable` returned ``True`` for ``x``."""
    return _events[0](x)


def event_forward_(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None,
                   out: torch.Tensor) -> None:
    """``out[r] = b + Σ_{i: x[r,i] = 1} Wᵀ[i]`` for binary ``x`` ``[R, F]`` (accumulate-only:
    work ∝ spikes), ``weight_t = Wᵀ`` ``[F, N]`` contiguous, ``out`` ``[R, N]`` contiguous."""
    _events[1](x, weight_t, bias, out)


def event_weight_grad_(x: torch.Tensor, grad: torch.Tensor, out: torch.Tensor) -> None:
    """``out[i] = Σ_{r: x[r,i] = 1} gI[r]`` (``xᵀ gI`` = ``dWᵀ`` ``[F, N]``) for binary ``x``."""
    _events[2](x, grad, out)


def network_usable(x: torch.Tensor) -> bool:
    """Whether the whole-network passes take input ``x``: a float32/float64 CPU tensor (any
    strides), not disabled by the environment, and the kernels built."""
    if x.device.type != "cpu" or x.dtype not in _DTYPES or x.dim() < 2:
        return False
    if _disabled_by_env():
        return False
    return load() is not None


def network_forward(x: torch.Tensor, weights: list[torch.Tensor],
                    biases: list[torch.Tensor | None], forward_limits: list[float],
                    grad_limits: list[float], beta: float, threshold: float, reset: int
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, list[int]]:
    """Every layer of the network in one call: ``(charges, spikes, counts [L], events)``; layer
    ``l``'s forward product is event-driven below input density ``forward_limits[l]`` and its
    weight gradient (``events[l] = 1``) below ``grad_limits[l]`` (``0``: never). Call only after
    :func:`network_usable` returned ``True`` for ``x``; weights and biases of ``x``'s dtype."""
    return _network[0](x, weights, biases, forward_limits, grad_limits, beta, threshold, reset)


def network_backward(grad_spikes: torch.Tensor | None, grad_charge: torch.Tensor | None,
                     inputs: list[torch.Tensor], charges: list[torch.Tensor],
                     weights: list[torch.Tensor], has_bias: list[int], events: list[int],
                     needs_grad: list[int], needs_input_grad: bool, beta: float,
                     threshold: float, reset: int, surrogate: str, slope: float
                     ) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
    """``(dx, [dW_1, db_1, ...])`` of the network from the gradients at the last layer's ``S``
    and ``H`` (either may be ``None``); ``inputs[l]`` is layer ``l``'s input (``x``, then the
    spikes below), ``needs_grad[2l]``/``[2l+1]`` ask for ``dW_l``/``db_l``. ``surrogate`` must
    be one of :data:`SURROGATE_CODES`."""
    return _network[1](grad_spikes, grad_charge, inputs, charges, weights, has_bias, events,
                       needs_grad, needs_input_grad, beta, threshold, reset,
                       SURROGATE_CODES[surrogate], slope)


def network_clear() -> None:
    """Free the whole-network passes' pooled outputs and backward buffers (this thread's)."""
    if _network is not None:
        _network[2]()
