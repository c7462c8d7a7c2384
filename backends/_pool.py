"""A storage pool for the custom engine's fresh ``[T, B, N]`` outputs (charges, spikes).

A new multi-megabyte tensor is backed by pages the kernel maps on first touch: every train step
paid a page fault per 4 KiB of each layer's charge and spike tensors (measured in the last round:
a fresh ``[25, 128, 128]`` float32 product ~0.3-0.4 ms against ~0.05 ms into reused memory, and
more inside a virtual machine). The pool keeps the storages of earlier calls and hands one out
again once nothing else uses it: each tensor it returns is a *new* tensor set on a pooled storage
(not a view, so it has its own autograd version counter), and a storage is free when its
reference count is back to the pool's own reference (checked with
``torch._C._storage_Use_Count``; the autograd graph, the caller's outputs and any view of them
all hold references). Where that private function is missing the pool allocates plainly.

Per thread (``threading.local``), a few storages per shape, at most :attr:`StoragePool.max_bytes`
in all; what does not fit is allocated plainly.
"""

from __future__ import annotations

import threading

import torch

_use_count = getattr(torch._C, "_storage_Use_Count", None)


class StoragePool(threading.local):
    """Reusable storages for :meth:`empty` (see the module docstring)."""

    per_shape = 4
    max_bytes = 512 * 2**20

    def __init__(self) -> None:
        self.storages: dict[tuple, list[torch.Tensor]] = {}
        self.bytes = 0

    def empty(self, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype,
              device: torch.device) -> torch.Tensor:
        """An uninitialised contiguous tensor, on a pooled storage when one is free."""
        shape = tuple(shape)
        if device.type != "cpu" or _use_count is None:
            return torch.empty(shape, dtype=dtype, device=device)
        key = (shape, dtype)
        masters = self.storages.setdefault(key, [])
        for master in masters:
            # 2 = the master tensor + the temporary storage object of this check
            if _use_count(master.untyped_storage()._cdata) == 2:
                return _on_storage(master)
        master = torch.empty(shape, dtype=dtype, device=device)
        nbytes = master.untyped_storage().nbytes()
        if len(masters) < self.per_shape and self.bytes + nbytes <= self.max_bytes:
            masters.append(master)
            self.bytes += nbytes
            return _on_storage(master)
        return master

    def clear(self) -> None:
        self.storages.clear()
        self.bytes = 0


def _on_storage(master: torch.Tensor) -> torch.Tensor:
    """A new (non-view) tensor of ``master``'s shape on ``master``'s storage."""
    return torch.empty(0, dtype=master.dtype).set_(master.untyped_storage(), 0, master.shape,
                                                   master.stride())


POOL = StoragePool()
