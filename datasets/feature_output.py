"""Output safety of the feature extraction: never alias an input, never overwrite a foreign file.

``out`` (and its cache folder and manifest) may not be ``dataset.json``, a listed volume, or
anything inside the folders that hold the volumes; an existing ``out`` or manifest that
spikebench did not write is never overwritten; an OS refusal to write becomes one
:class:`~spikebench.errors.DataError` naming the path and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from spikebench.datasets.msd import Case
from spikebench.datasets.slice_features import FEATURE_NAMES
from spikebench.errors import DataError, OutputError
from spikebench.io import refuse_foreign

_INPUT_FOLDERS = ("imagesTr", "labelsTr", "imagesTs")


def cache_dir_for(out: str | Path) -> Path:
    """The per-case cache folder of an output table: ``<out>.cache/``."""
    out = Path(out)
    return out.with_name(out.name + ".cache")


def manifest_path_for(out: str | Path) -> Path:
    """Where the extraction records its parameters and skipped cases:
    ``<out stem>.manifest.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".manifest.json")


def _check_output(root: Path, out: Path, cases: list[Case]) -> None:
    """Refuse an output (table, cache folder, manifest) that aliases an input or overwrites a
    file spikebench did not write."""
    inputs = {_real(root / "dataset.json"): root / "dataset.json"}
    folders = {_real(root / name): root / name for name in _INPUT_FOLDERS}
    root_real = _real(root)
    for case in cases:
        for path in (case.image, case.label):
            if path is not None:
                inputs[_real(path)] = path
                if _real(path.parent) != root_real:
                    folders[_real(path.parent)] = path.parent
    for target in (out, cache_dir_for(out), manifest_path_for(out)):
        real = _real(target)
        if real in inputs:
            raise DataError(f"{target}: this output would overwrite the input "
                            f"{inputs[real]}; choose an output path outside the dataset's "
                            "files")
        for folder_real, folder in folders.items():
            if real == folder_real or real.is_relative_to(folder_real):
                raise DataError(f"{target}: this output lies inside the input folder {folder} "
                                f"of the data root {root}; write it elsewhere (e.g. beside "
                                "the data root)")
    if out.is_dir():
        raise DataError(f"{out}: is a directory; --out must name a .parquet file (e.g. "
                        f"{out / 'features.parquet'})")
    # the one rule of spikebench.io: never overwrite a path spikebench did not write (an
    # empty file is what an interrupted older version could leave: replaced)
    refuse_foreign(out, lambda p: p.stat().st_size == 0 or _written_by_spikebench(p),
                   error=DataError, what="a feature table spikebench extract wrote",
                   fix="choose another output path or remove the file yourself")
    refuse_foreign(manifest_path_for(out), _is_our_manifest, error=DataError,
                   what="an extraction manifest",
                   fix="choose another output path or remove the file yourself")


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _written_by_spikebench(path: Path) -> bool:
    """An extracted table: our parquet metadata, or (tables from before it existed) our
    exact leading columns and the first feature names."""
    try:
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
    except Exception:  # not parquet at all, unreadable, or empty: not ours
        return False
    attrs = (schema.metadata or {}).get(b"PANDAS_ATTRS", b"")
    if b'"extracted_features"' in attrs:
        return True
    return schema.names[:3] == ["patient_id", "slice_idx", "label"] and set(
        FEATURE_NAMES[:12]) <= set(schema.names)


def _is_our_manifest(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and ("spikebench_manifest" in meta
                                       or {"features_version", "skipped"} <= set(meta))


def _write(path: Path, action: Callable[[], None]) -> None:
    """Run a write, turning an OS refusal into one DataError naming the path and the fix."""
    try:
        action()
    except OutputError as exc:  # already names the file and the fix for its cause
        raise DataError(exc.message) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({type(exc).__name__}: {exc.strerror or exc}); "
                        "choose an output file path on a writable file system, not a folder, "
                        "with a name the file system accepts (<= 255 bytes)") from None

