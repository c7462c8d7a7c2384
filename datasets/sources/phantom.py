"""``source = "phantom"``: generate synthetic CT in the MSD Task03 layout, then extract.

The phantom (:func:`~spikebench.datasets.phantom.write_phantom`) is written into
``path`` (default: the results folder's data folder) and its features are extracted exactly
as a real MSD folder's would be, so the demo exercises the whole data path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from spikebench.datasets.sources.base import DataSource, ImageOptions, SourceData
from spikebench.datasets.sources.msd import extract_into


class PhantomOptions(ImageOptions):
    #: Folder to generate into (default: ``<results>/data/phantom``); reused when it holds the
    #: same phantom.
    path: str | None = None
    cases: int = Field(16, ge=4, le=1000, description="number of training volumes")
    phantom_seed: int = Field(0, ge=0, le=2**32 - 1)
    shape: list[int] = Field(default_factory=lambda: [96, 96])
    min_lesion_voxels: int = Field(1, ge=1, le=10**9)
    #: A slice is positive when its tumour area is at least this many mm² (and
    #: min_lesion_voxels); ambiguous_margin_mm2 drops negatives just below it.
    min_lesion_mm2: float | None = Field(None, ge=0)
    ambiguous_margin_mm2: float | None = Field(None, ge=0)
    workers: int = Field(1, ge=1, le=256)
    on_error: Literal["fail", "skip"] = "fail"
    #: The phantom's body is ~70 mm across (not ~350 mm): its crops default to 0.5 mm pixels.
    crop_spacing_mm: float = Field(0.5, gt=0, le=20)

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: list[int]) -> list[int]:
        if len(v) != 2 or min(v) < 32 or max(v) > 1024:
            raise ValueError("must be two in-plane sizes between 32 and 1024, e.g. [96, 96]")
        return v


class PhantomSource(DataSource[PhantomOptions]):
    """Synthetic MSD-layout CT (module docstring)."""

    name = "phantom"
    summary = "synthetic CT in the MSD Task03 layout, generated then extracted"
    Options = PhantomOptions

    def load(self, options: PhantomOptions, workdir: Path, *, progress: bool = False
             ) -> SourceData:
        from spikebench.datasets.phantom import write_phantom

        root = Path(options.path) if options.path else workdir / "phantom"
        if not (root / "dataset.json").exists():
            write_phantom(root, cases=options.cases, seed=options.phantom_seed,
                          shape=(options.shape[0], options.shape[1]), progress=progress)
        return extract_into(root, workdir, workers=options.workers,
                            min_lesion_voxels=options.min_lesion_voxels,
                            on_error=options.on_error, progress=progress, source=self.name,
                            min_lesion_mm2=options.min_lesion_mm2,
                            ambiguous_margin_mm2=options.ambiguous_margin_mm2,
                            max_slice_voxels=max(512 * 512, options.shape[0] * options.shape[1]),
                            crops=options.crop_settings() if options.images else None)
