"""``spikebench export``: a trained network of a results folder to a NIR graph file."""

from __future__ import annotations

from pathlib import Path

from spikebench.errors import DataError


def pick_model(run: Path, cell: str | None, repeat: int) -> Path:
    """The ``models/*.pt`` file for ``cell`` (``backend/rule``) and ``repeat``; by default the
    cell with the best mean test patient PR-AUC among those with a saved network."""
    if run.is_file():
        return run
    models = run / "models"
    if cell is None:
        import pandas as pd

        res_path = run / "results.parquet"
        if not res_path.exists():
            raise DataError(f"{res_path} not found: is {run} a spikebench results folder?")
        res = pd.read_parquet(res_path)
        res = res[(res["status"] == "ok") & (res["kind"] == "snn")]
        ranked = (res.groupby(["backend", "rule"])["test_patient_pr_auc"].mean()
                  .sort_values(ascending=False))
        for backend, rule in ranked.index:
            path = models / f"{backend}__{rule}__r{repeat}.pt"
            if path.exists():
                return path
        raise DataError(f"no saved network in {models} (rules without a LIF network, e.g. the "
                        "Tempotron, are not exportable)")
    if cell.count("/") != 1:
        raise DataError(f"--cell must be BACKEND/RULE, got {cell!r}")
    path = models / f"{cell.replace('/', '__')}__r{repeat}.pt"
    if not path.exists():
        have = sorted(p.stem for p in models.glob("*.pt")) if models.exists() else []
        raise DataError(f"{path} not found; saved networks: {', '.join(have) or 'none'}")
    return path


def export_run(run: str | Path, to: str | Path, *, cell: str | None = None,
               repeat: int = 0) -> Path:
    """Write the chosen network as a NIR file ``to``; returns its path."""
    import nir

    from spikebench.backends.nir_io import to_nir
    from spikebench.backends.serialize import load_network

    path = pick_model(Path(run), cell, repeat)
    spec, weights, _meta = load_network(path)
    to = Path(to)
    to.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(to), to_nir(spec, weights))
    return to
