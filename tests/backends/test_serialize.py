"""Network files: spec + weights + metadata round trip, loaded without unpickling code."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from spikebench.backends import NetworkSpec
from spikebench.backends.conformance import random_weights
from spikebench.backends.serialize import load_network, save_network
from spikebench.errors import BackendError, DataError


def test_round_trip(tmp_path):
    spec = NetworkSpec(sizes=(4, 5, 2), beta=0.7, reset="zero", surrogate="sigmoid", bias=False)
    weights = random_weights(spec, seed=0, dtype=torch.float32)
    meta = {"params": {"lr": np.float64(0.01), "hidden": np.int64(5), "grid": (1, 2)},
            "cell": "custom/surrogate", "flag": True, "none": None}
    save_network(tmp_path / "m.pt", spec, weights, meta)
    spec2, weights2, meta2 = load_network(tmp_path / "m.pt")
    assert spec2 == spec
    assert meta2 == {"params": {"lr": 0.01, "hidden": 5, "grid": [1, 2]},
                     "cell": "custom/surrogate", "flag": True, "none": None}
    for (w, b), (w2, b2) in zip(weights, weights2):
        assert torch.equal(w, w2) and b is None and b2 is None


def test_meta_must_be_plain_data(tmp_path):
    spec = NetworkSpec(sizes=(2, 2))
    with pytest.raises(BackendError, match=r"meta value at meta\.obj"):
        save_network(tmp_path / "m.pt", spec, random_weights(spec), {"obj": object()})


def test_refuses_files_that_would_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "spikebench-network", "payload": Evil()}, path,
               pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(DataError, match="not a spikebench network file"):
        load_network(path)
    with pytest.raises(DataError, match="no such"):
        load_network(tmp_path / "missing.pt")
