"""Backend × rule heatmap of the primary metric (mean over repeats, annotated mean ± std)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .plotting import new_figure, wrap
from .tables import metric_label


def data(main: pd.DataFrame, primary: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and std of ``primary`` as backend × rule grids (SNN cells only, NaN = no result)."""
    snn = main[main["kind"] == "snn"] if not main.empty else main
    if snn.empty or f"{primary}_mean" not in snn:
        return pd.DataFrame(), pd.DataFrame()
    backends = list(dict.fromkeys(snn["backend"]))
    rules = list(dict.fromkeys(snn["rule"]))
    mean = snn.pivot(index="backend", columns="rule", values=f"{primary}_mean")
    std = snn.pivot(index="backend", columns="rule", values=f"{primary}_std")
    return mean.reindex(index=backends, columns=rules), std.reindex(index=backends, columns=rules)


def draw(mean: pd.DataFrame, std: pd.DataFrame, primary: str) -> Figure | None:
    """Annotated heatmap; cells without a result are grey and say ``no result``."""
    if mean.empty:
        return None
    n_b, n_r = mean.shape
    fig = new_figure(max(4.5, 1.7 * n_r + 2.2), max(2.8, 0.9 * n_b + 1.6))
    ax = fig.add_subplot()
    values = mean.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    vmin = min(0.0, float(finite.min())) if finite.size else 0.0
    cmap = matplotlib_cmap()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=1.0,
                      aspect="auto")
    ax.set_facecolor("#dddddd")
    for i in range(n_b):
        for j in range(n_r):
            v, s = values[i, j], std.to_numpy(dtype=float)[i, j]
            if np.isfinite(v):
                text = f"{v:.3f}" + (f"\n± {s:.3f}" if np.isfinite(s) else "")
                colour = "white" if (v - vmin) / max(1e-9, 1.0 - vmin) < 0.55 else "black"
            else:
                text, colour = "no result", "#555555"
            ax.text(j, i, text, ha="center", va="center", fontsize=10, color=colour)
    ax.set_xticks(range(n_r), [wrap(str(r), 14) for r in mean.columns])
    ax.set_yticks(range(n_b), [wrap(str(b), 14) for b in mean.index])
    ax.set_xlabel("learning rule")
    ax.set_ylabel("backend")
    ax.set_title(f"Test {metric_label(primary)} (mean ± std over repeats)")
    fig.colorbar(image, ax=ax, shrink=0.9, label=metric_label(primary))
    return fig


def matplotlib_cmap():  # -> Colormap
    """Viridis with grey for missing cells."""
    import matplotlib

    return matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
