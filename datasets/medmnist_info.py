"""What MedMNIST says about each of its datasets: task, label meanings, channels, sizes, files.

The facts come from the ``medmnist`` package's own ``INFO`` table when it is installed
(``pip install --no-deps medmnist``: its ``info.py`` is read as data, never imported, because
importing ``medmnist`` imports torch and creates ``~/.medmnist``), else from the built-in table
below, which holds the binary datasets of MedMNIST v3 (copied from medmnist 3.0.2's ``INFO``).
A non-binary dataset (multi-class, multi-label, ordinal) needs the installed package.

File names follow medmnist 3: ``<flag>.npz`` for 28 px and ``<flag>_<size>.npz`` otherwise,
downloaded from the Zenodo record of MedMNIST v3.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

from spikebench.errors import DataError

#: The Zenodo record medmnist 3 downloads from (``<record>/<file>?download=1``).
ZENODO = "https://zenodo.org/records/10519652/files"
#: The image sizes MedMNIST v3 ships: 2-D datasets all four, 3-D ones the first two.
SIZES_2D = (28, 64, 128, 224)
SIZES_3D = (28, 64)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """One MedMNIST dataset's facts.

    Attributes
    ----------
    flag : str
        The dataset's name in MedMNIST (``"nodulemnist3d"``), also its file name's stem.
    task : str
        ``"binary-class"``, ``"multi-class"``, ``"multi-label, binary-class"`` or
        ``"ordinal-regression"``.
    labels : dict of int to str
        Label id -> meaning.
    n_channels : int
        1 (grey) or 3 (RGB).
    n_samples : dict of str to int
        Samples of the official ``train``, ``val`` and ``test`` sets.
    md5 : dict of int to str
        Size -> MD5 of its ``.npz`` file (the sizes the dataset ships).
    origin : str
        ``"medmnist <version>"`` or ``"built-in table"``.
    """

    flag: str
    task: str
    labels: dict[int, str]
    n_channels: int
    n_samples: dict[str, int]
    md5: dict[int, str]
    origin: str

    @property
    def is_3d(self) -> bool:
        """Whether the dataset holds volumes (``...mnist3d``)."""
        return self.flag.endswith("3d")

    @property
    def sizes(self) -> tuple[int, ...]:
        """The image sizes the dataset ships."""
        return tuple(sorted(self.md5))

    @property
    def binary(self) -> bool:
        """Whether the task is binary (labels 0/1 used as they are)."""
        return self.task == "binary-class"

    def file_name(self, size: int) -> str:
        """``<flag>.npz`` for 28 px, ``<flag>_<size>.npz`` otherwise (medmnist 3's names)."""
        return f"{self.flag}.npz" if size == 28 else f"{self.flag}_{size}.npz"

    def url(self, size: int) -> str:
        """Where medmnist 3 downloads the ``size`` file from."""
        return f"{ZENODO}/{self.file_name(size)}?download=1"


def _entry(labels: dict[str, str], channels: int, samples: tuple[int, int, int],
           md5: dict[int, str]) -> dict[str, Any]:
    return {"task": "binary-class", "label": labels, "n_channels": channels,
            "n_samples": dict(zip(("train", "val", "test"), samples)),
            **{("MD5" if size == 28 else f"MD5_{size}"): digest for size, digest in md5.items()}}


#: The binary datasets of MedMNIST v3, as medmnist 3.0.2's ``INFO`` describes them.
BUILTIN: dict[str, dict[str, Any]] = {
    "pneumoniamnist": _entry({"0": "normal", "1": "pneumonia"}, 1, (4708, 524, 624), {
        28: "28209eda62fecd6e6a2d98b1501bb15f", 64: "8f4eceb4ccffa70c672198ea285246c6",
        128: "05b46931834c231683c68f40c47b2971", 224: "d6a3c71de1b945ea11211b03746c1fe1"}),
    "breastmnist": _entry({"0": "malignant", "1": "normal, benign"}, 1, (546, 78, 156), {
        28: "750601b1f35ba3300ea97c75c52ff8f6", 64: "742edef2a1fd1524b2efff4bd7ba9364",
        128: "363e4b3f8d712e9b5de15470a2aaadf1", 224: "b56378a6eefa9fed602bb16d192d4c8b"}),
    "nodulemnist3d": _entry({"0": "benign", "1": "malignant"}, 1, (1158, 165, 310), {
        28: "8755a7e9e05a4d9ce80a24c3e7a256f3", 64: "c47c5b7d457bf6332200d2ea6d64ecd8"}),
    "adrenalmnist3d": _entry({"0": "normal", "1": "hyperplasia"}, 1, (1188, 98, 298), {
        28: "bbd3c5a5576322bc4cdfea780653b1ce", 64: "17721accfe9fb005146a47d33bc54b2f"}),
    "vesselmnist3d": _entry({"0": "vessel", "1": "aneurysm"}, 1, (1335, 191, 382), {
        28: "b41fd4f7e7e2feedddb201585ecafa1b", 64: "6bb274a8846e1097066dcd64e2c4520f"}),
    "synapsemnist3d": _entry({"0": "inhibitory synapse", "1": "excitatory synapse"}, 1,
                             (1230, 177, 352), {
        28: "1235b78a3cd6280881dd7850a78eadb6", 64: "43bd14ebf3af9d3dd072446fedc14d5e"}),
}


@lru_cache(maxsize=1)
def installed_info() -> tuple[dict[str, dict[str, Any]], str] | None:
    """``(INFO, version)`` of the installed ``medmnist`` package, read from its ``info.py`` as
    data (module docstring), or ``None`` when it is not installed or not readable."""
    try:
        spec = importlib.util.find_spec("medmnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "info.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                node.targets[0], ast.Name) and node.targets[0].id in ("INFO", "__version__"):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                return None
    info = found.get("INFO")
    if not isinstance(info, dict):
        return None
    return info, str(found.get("__version__", "?"))


def known_flags() -> list[str]:
    """Every dataset flag known here (the installed medmnist's, else the built-in ones)."""
    installed = installed_info()
    return sorted(installed[0] if installed else BUILTIN)


def dataset_info(flag: str) -> DatasetInfo:
    """The facts of MedMNIST dataset ``flag`` (module docstring says where they come from).

    Parameters
    ----------
    flag : str
        A MedMNIST dataset name, e.g. ``"nodulemnist3d"``.

    Returns
    -------
    DatasetInfo

    Raises
    ------
    DataError
        An unknown flag, naming the known ones (and how to know more).

    Examples
    --------
    >>> from spikebench.datasets.medmnist_info import dataset_info
    >>> info = dataset_info("nodulemnist3d")
    >>> info.task, info.labels[1], info.sizes, info.file_name(64)
    ('binary-class', 'malignant', (28, 64), 'nodulemnist3d_64.npz')
    """
    installed = installed_info()
    table, origin = (installed[0], f"medmnist {installed[1]}") if installed else (
        BUILTIN, "built-in table")
    raw = table.get(flag)
    if raw is None:
        more = "" if installed else (" (the built-in table holds the binary datasets; "
                                     "`pip install --no-deps medmnist` adds the others)")
        raise DataError(f"[data].flag = {flag!r}: not a MedMNIST dataset; known: "
                        f"{', '.join(sorted(table))}{more}")
    md5 = {28 if key == "MD5" else int(key[4:]): str(value) for key, value in raw.items()
           if key.startswith("MD5")}
    return DatasetInfo(flag=flag, task=str(raw["task"]),
                       labels={int(k): str(v) for k, v in raw["label"].items()},
                       n_channels=int(raw["n_channels"]),
                       n_samples={k: int(v) for k, v in raw["n_samples"].items()},
                       md5=md5 or {s: "" for s in (SIZES_3D if flag.endswith("3d")
                                                  else SIZES_2D)},
                       origin=origin)


__all__ = ["BUILTIN", "ZENODO", "DatasetInfo", "dataset_info", "installed_info", "known_flags"]
