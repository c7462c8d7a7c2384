"""Generated data for the datasets tests: a small phantom MSD folder (built once per session)
and its broken variants. Nothing binary is committed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from broken_inputs import write_broken_variants

from spikebench.datasets.phantom import write_phantom

SMALL = {"cases": 6, "shape": (48, 48), "slices": (10, 16), "test_cases": 1, "seed": 3}


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    """A small quirky phantom (read-only: copy it before modifying)."""
    return write_phantom(tmp_path_factory.mktemp("phantom") / "Task03_Liver", **SMALL)


@pytest.fixture
def phantom_copy(phantom_root: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the phantom."""
    return Path(shutil.copytree(phantom_root, tmp_path / "Task03_Liver"))


@pytest.fixture(scope="session")
def broken_variants(phantom_root: Path, tmp_path_factory) -> dict[str, Path]:
    """One broken copy of the phantom per defect (see broken_inputs.py)."""
    return write_broken_variants(phantom_root, tmp_path_factory.mktemp("broken"))


@pytest.fixture(scope="session")
def clean_table(phantom_root: Path, tmp_path_factory):
    """The phantom's feature table from an uninterrupted single-process run."""
    import pandas as pd

    from spikebench.datasets.features import extract_features

    out = tmp_path_factory.mktemp("clean") / "features.parquet"
    extract_features(phantom_root, out)
    return pd.read_parquet(out)
