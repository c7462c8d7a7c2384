"""The storage pool reuses an output's memory only once nothing refers to it any more."""

from __future__ import annotations

import torch

from spikebench.backends import NetworkSpec, get_backend
from spikebench.backends._pool import StoragePool


def test_storage_is_reused_only_after_release():
    pool = StoragePool()
    a = pool.empty((3, 4), torch.float32, torch.device("cpu"))
    b = pool.empty((3, 4), torch.float32, torch.device("cpu"))
    assert a.data_ptr() != b.data_ptr()  # a is alive: b gets another storage
    view = a[1:]
    ptr = a.data_ptr()
    del a
    c = pool.empty((3, 4), torch.float32, torch.device("cpu"))
    assert c.data_ptr() != ptr  # a view still holds a's storage
    del view, c
    d = pool.empty((3, 4), torch.float32, torch.device("cpu"))
    assert d.data_ptr() in (ptr, b.data_ptr()) and d._base is None  # reused, not a view


def test_outputs_kept_by_the_caller_are_never_overwritten():
    net = get_backend("custom").build(NetworkSpec(sizes=(5, 7, 3)), seed=0)
    x1 = (torch.rand(4, 2, 5) < 0.5).float()
    kept = net(x1)
    snapshot = kept.spikes.clone(), kept.membrane.clone()
    for _ in range(3):
        out = net(torch.rand(4, 2, 5) * 3)
        out.spikes.sum().backward()
    assert torch.equal(kept.spikes, snapshot[0]) and torch.equal(kept.membrane, snapshot[1])
