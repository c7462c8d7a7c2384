"""Data sources: plug-ins that turn a spec's ``[data]`` table into a feature table.

A source is a ``DataSource`` registered under the entry-point group
``spikebench.datasets`` (like backends and rules), so another cohort in its own layout (LiTS,
KiTS, an in-house export) is a small package, not a change to the harness. Built in:
``phantom`` (generate MSD-layout CT, then extract), ``msd`` (extract from an MSD Task03
folder), ``table`` (an extracted or user-supplied feature table) and ``medmnist`` (a MedMNIST
v3 dataset from its official ``.npz``, with its official split). ``spikebench datasets``
lists what is installed.
"""

from __future__ import annotations

from typing import Any, cast

from spikebench.datasets.sources.base import DataSource, SourceData
from spikebench.errors import DataError
from spikebench.plugins import load_plugin, plugin_entry_points

GROUP = "spikebench.datasets"
_BUILTIN = {
    "phantom": "spikebench.datasets.sources.phantom:PhantomSource",
    "msd": "spikebench.datasets.sources.msd:MSDSource",
    "table": "spikebench.datasets.sources.table:TableSource",
    "medmnist": "spikebench.datasets.sources.medmnist:MedMNISTSource",
}


def available_sources() -> list[str]:
    """Names of the installed data sources."""
    return sorted(plugin_entry_points(GROUP, _BUILTIN))


def get_source(name: str) -> DataSource[Any]:
    """Instantiate the data source registered as ``name`` (``DataError`` lists the installed
    ones)."""
    return cast("DataSource[Any]", load_plugin(GROUP, _BUILTIN, name, DataSource, DataError,
                                               "data source"))


__all__ = ["GROUP", "DataSource", "SourceData", "available_sources", "get_source"]
