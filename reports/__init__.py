"""Reports: tables (Markdown / HTML / LaTeX / CSV) and figures from a study's results folder.

``build_report(study_dir)`` reads only the files of the results folder (see
:mod:`spikebench.harness.results`) and never trains. Each figure kind is its own ``figure_*``
module (a pure ``data`` function and a ``draw`` function); numbers come from
:mod:`~spikebench.reports.tables`, :mod:`~spikebench.reports.bootstrap` and
:mod:`~spikebench.reports.stats`. Names are imported lazily so ``import spikebench.reports``
does not pull in pandas or matplotlib.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReportError", "StudyTables", "build_report", "load_study", "screenshot"]

_HOMES = {"build_report": "build", "ReportError": "load", "StudyTables": "load",
          "load_study": "load", "screenshot": "browser"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
