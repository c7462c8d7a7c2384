"""``source = "msd"``: a Medical Segmentation Decathlon Task03 Liver folder (real layout).

Features are extracted per liver slice (:func:`~spikebench.datasets.features.
extract_features`) into the results folder's data folder, cached per case, so an interrupted
study resumes without recomputing them; the input folder is only read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from spikebench.datasets.sources.base import DataSource, ImageOptions, SourceData


class MSDOptions(ImageOptions):
    #: The folder holding ``dataset.json`` (relative paths: from the spec file's folder).
    path: str
    min_lesion_voxels: int = Field(1, ge=1, le=10**9)
    #: A slice is positive when its tumour area is at least this many mm² (and
    #: min_lesion_voxels); ambiguous_margin_mm2 drops negatives just below it.
    min_lesion_mm2: float | None = Field(None, ge=0)
    ambiguous_margin_mm2: float | None = Field(None, ge=0)
    workers: int = Field(1, ge=1, le=256)
    on_error: Literal["fail", "skip"] = "fail"


def extract_into(root: Path, workdir: Path, *, workers: int, min_lesion_voxels: int,
                 on_error: str, progress: bool, source: str, crops: Any = None,
                 **options: Any) -> SourceData:
    """Extract ``root``'s features to ``workdir/features.parquet`` and load them; with
    ``crops`` (:class:`~spikebench.datasets.crops.CropSettings`) also the image view, cropped
    into ``workdir/images/`` for the cases the table holds."""
    from spikebench.datasets.features import extract_features
    from spikebench.datasets.phantom import phantom_parameters
    from spikebench.datasets.tables import load_feature_table

    features = workdir / "features.parquet"
    # crops of the cases extracted now are cut in the same read of their volumes
    result = extract_features(root, features, workers=workers,
                              min_lesion_voxels=min_lesion_voxels, on_error=on_error,
                              progress=progress,
                              crops=(workdir / "images", crops) if crops is not None else None,
                              **options)
    table = load_feature_table(features, label="label", group="patient_id")
    excluded = [{"patient_id": pid, "reason": reason} for pid, reason in result.skipped]
    info: dict[str, Any] = {"source": source, "path": str(root), "features": str(features),
                            "excluded_cases": excluded}
    generator = phantom_parameters(root)
    if generator is not None:  # synthetic data, whichever source reads it: say how it was made
        info["phantom"] = generator
    images = None
    if crops is not None:
        images = crop_table(root, workdir / "images", table, crops, workers=workers,
                            progress=progress)
        info["images"] = {**crops.record(), "folder": str(workdir / "images")}
    return SourceData(table, info, images)


def crop_table(root: Path, folder: Path, table: Any, settings: Any, *, workers: int = 1,
               progress: bool) -> Any:
    """The image view of ``table``: crops of its cases cached in ``folder``, one per row."""
    import numpy as np

    from spikebench.datasets.crops import extract_crops, image_rows
    from spikebench.datasets.msd import training_cases

    wanted = set(np.asarray(table.groups).astype(str))
    cases = [c for c in training_cases(root) if c.patient_id in wanted]
    crops = extract_crops(cases, folder, settings, workers=workers, progress=progress)
    return image_rows(crops, np.asarray(table.groups), np.asarray(table.slice_idx),
                      settings.size)


class MSDSource(DataSource[MSDOptions]):
    """MSD Task03 Liver folder (module docstring)."""

    name = "msd"
    summary = "Medical Segmentation Decathlon Task03 Liver folder (dataset.json + NIfTI)"
    Options = MSDOptions
    path_options = ("path",)

    def load(self, options: MSDOptions, workdir: Path, *, progress: bool = False) -> SourceData:
        return extract_into(Path(options.path), workdir, workers=options.workers,
                            min_lesion_voxels=options.min_lesion_voxels,
                            on_error=options.on_error, progress=progress, source=self.name,
                            min_lesion_mm2=options.min_lesion_mm2,
                            ambiguous_margin_mm2=options.ambiguous_margin_mm2,
                            crops=options.crop_settings() if options.images else None)
