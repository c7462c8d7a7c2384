"""``spikebench export``: a trained network of a results folder to a NIR bundle.

:mod:`.run` picks the network and writes the graph, :mod:`.sidecar` describes what NIR has no
node for, :mod:`.agreement` measures how far the graph as each importer runs it agrees.
"""

from __future__ import annotations

from spikebench.harness.export.run import ExportResult, export_run, pick_model

__all__ = ["ExportResult", "export_run", "pick_model"]
