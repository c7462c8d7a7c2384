"""spikebench: a leakage-free benchmark of spiking neural network backends and learning rules.

The package is laid out along the data flow (see docs/architecture.md):
``spikebench.datasets`` reads CT volumes and writes feature tables, ``spikebench.backends`` builds
spiking networks on several frameworks from one neutral spec, ``spikebench.harness`` splits,
trains, tunes (Optuna) and evaluates, ``spikebench.reports`` turns results into tables and figures.

The public API is this package's root; the names below are what a script needs, from synthetic
data to a report::

    import spikebench

    spikebench.write_phantom("data/phantom", cases=16)           # MSD Task03 layout
    spikebench.extract("data/phantom", "data/features.parquet")  # one row per liver slice
    out = spikebench.run_study("demo", "results/demo", trials=3)  # shipped spec or a path
    tables = spikebench.load_results(out)                        # results, predictions, trials
    spikebench.build_report(out)                                 # results/demo/report/

Each name is imported on first use, so ``import spikebench`` and ``spikebench --help`` stay
instant and import neither torch nor pandas; ``help(spikebench.run_study)`` shows the real
function's signature and docstring.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spikebench.errors import SpikebenchError

if TYPE_CHECKING:
    # What the lazy names below are, for type checkers and IDEs: the real functions and
    # classes, so a typo such as ``spikebench.extrct`` is an error and every call is checked.
    from spikebench.datasets.features import extract_features as extract
    from spikebench.datasets.phantom import write_phantom
    from spikebench.harness.spec import StudySpec
    from spikebench.reports.build import build_report
    from spikebench.reports.load import StudyTables

__version__ = "0.1.0"

__all__ = [
    "SpikebenchError",
    "StudyTables",
    "__version__",
    "build_report",
    "extract",
    "load_results",
    "run_study",
    "write_phantom",
]

#: Public name → (module, attribute) it is loaded from on first use.
_LAZY = {
    "build_report": ("spikebench.reports.build", "build_report"),
    "extract": ("spikebench.datasets.features", "extract_features"),
    "write_phantom": ("spikebench.datasets.phantom", "write_phantom"),
    "StudyTables": ("spikebench.reports.load", "StudyTables"),
}


def run_study(spec: StudySpec | str | Path, out: str | Path, *, trials: int | None = None,
              storage: str | None = None, workers: int = 1, progress: bool = True) -> Path:
    """Run (or resume) a study and return its results folder.

    Every backend × rule cell of the spec's grid is tuned by Optuna on validation patients
    only, refit, and scored once on the sealed test patients. Rerunning the same call resumes:
    finished trials and rows are kept, only what is missing runs.

    Parameters
    ----------
    spec : StudySpec or str or Path
        A study spec file (TOML), the name of a spec shipped with spikebench (``"demo"``,
        ``"msd-liver"``, ...: ``spikebench.studies.shipped_specs()``; a path that exists
        wins), or an already loaded ``spikebench.harness.spec.StudySpec``.
    out : str or Path
        The results folder. It receives ``results.parquet``, ``predictions.parquet``,
        ``trials.parquet``, ``protocol.json``, ``identity.json`` and the Optuna journal.
    trials : int, optional
        Optuna trials per cell and tuning fold (default: the spec's ``[search].trials``).
    storage : str, optional
        An Optuna RDB URL (PostgreSQL) shared by several machines. Default:
        ``$SPIKEBENCH_STORAGE``, else the spec's ``[search].storage``, else the journal file
        in ``out``.
    workers : int, default 1
        Local worker processes; 1 reproduces bit for bit.
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    Path
        ``out``, the results folder.

    Raises
    ------
    SpecError
        The spec is missing, invalid, or another study's spec already ran in ``out``.
    DataError
        The spec's data cannot be read.

    See Also
    --------
    load_results : read the folder back.
    build_report : write its report.

    Examples
    --------
    Tune the shipped demo for two trials per cell (minutes; trains networks, so not run
    here):

    >>> import spikebench
    >>> out = spikebench.run_study("demo", "results/demo", trials=2)  # doctest: +SKIP
    >>> out                                                          # doctest: +SKIP
    PosixPath('results/demo')
    """
    from spikebench.harness.study import run_study as _run_study
    from spikebench.studies import resolve_spec

    if isinstance(spec, (str, Path)):
        spec = resolve_spec(spec)
    return _run_study(spec, out, trials=trials, storage=storage, workers=workers,
                      progress=progress)


def load_results(out: str | Path) -> StudyTables:
    """Read the results folder of a study into one typed object.

    It works on a study that is still running: whatever is finished is read.

    Parameters
    ----------
    out : str or Path
        A results folder written by ``run_study`` (or ``spikebench study run``).

    Returns
    -------
    StudyTables
        The folder's tables as pandas data frames: ``results`` (one row per backend × rule ×
        repeat × fold, always present), ``predictions`` (test-slice probabilities),
        ``trials`` (every Optuna trial) and ``curves`` (active-learning curves), each ``None``
        when the file is absent; ``protocol`` (protocol.json) and ``spec`` (spec.toml) as
        dictionaries; ``notes`` on whatever could not be read. ``tables.ok`` holds the
        finished rows only.

    Raises
    ------
    ReportError
        ``results.parquet`` is missing or unreadable (a ``SpikebenchError``; the message names
        the file).

    Examples
    --------
    >>> import spikebench
    >>> tables = spikebench.load_results("results/demo")  # doctest: +SKIP
    >>> tables.ok[["backend", "rule", "repeat", "test_patient_pr_auc"]]  # doctest: +SKIP

    A folder without results says what to run:

    >>> import tempfile
    >>> try:
    ...     spikebench.load_results(tempfile.mkdtemp())
    ... except spikebench.SpikebenchError as error:
    ...     print(type(error).__name__)
    ReportError
    """
    from spikebench.reports.load import load_study

    return load_study(out)


if not TYPE_CHECKING:  # type checkers see the imports above instead

    def __getattr__(name: str) -> object:
        """Import a public name on first use and cache it in the module."""
        if name in _LAZY:
            from importlib import import_module

            module, attribute = _LAZY[name]
            value = getattr(import_module(module), attribute)
            globals()[name] = value
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (lazy ones included) and the module's dunders, for ``dir()`` and
    tab completion."""
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})
