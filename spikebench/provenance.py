"""Provenance: what ran, where and with which code — the one place that collects it.

:func:`machine` describes the computer, :func:`versions` the installed packages that shape the
numbers, :func:`source_state` the git commit and whether the work tree was dirty, and
:func:`kernel_path` which implementation of the custom engine's loops ran. ``protocol.json``
and the benchmark JSON both use these, so the two never disagree.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

#: Packages whose versions can change a result (recorded when installed).
PACKAGES = ("spikebench", "torch", "numpy", "scipy", "pandas", "pyarrow", "scikit-learn",
            "scikit-image", "optuna", "nibabel", "snntorch", "spikingjelly", "nir")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (missing ones are left out)."""
    out = {"python": platform.python_version()}
    for pkg in packages:
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def machine() -> dict[str, Any]:
    """CPU model, core count, GPU (if torch is imported and sees one), OS and Python."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = ""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu,
                            "python": platform.python_version(), "platform": platform.platform()}
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    return info


def source_state(start: str | Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or "", "dirty": bool | None}`` of the git checkout holding the
    spikebench sources (empty for an installed wheel)."""
    here = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                 "--untracked-files=no"], check=True, capture_output=True,
                                text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": "", "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def kernel_path() -> str:
    """Which loops the custom engine runs in this process: "fused-cpp", "torchscript" or
    "not-loaded" (the engine was not used)."""
    kernels = sys.modules.get("spikebench.backends._lif_kernels")
    if kernels is None:
        return "not-loaded"
    if getattr(kernels, "_ops", None) is not None:
        return "fused-cpp"
    if getattr(kernels, "_failure", None) or kernels._disabled_by_env():
        return "torchscript"
    return "not-loaded"
