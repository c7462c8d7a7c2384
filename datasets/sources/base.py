"""The data-source contract: ``[data]`` options in, a validated feature table out.

A source declares its options as a pydantic model (:attr:`DataSource.Options`: the keys a
spec's ``[data]`` table may hold besides ``source``; unknown keys and bad values are errors
naming the key before any work) and implements :meth:`DataSource.load`, which returns the
feature table with patient ids plus provenance. A source writes only inside the ``workdir``
the harness gives it (a folder of the results folder), and reads its inputs without changing
them. Features never look at the tumour label: a source that computes features from images
uses the liver ROI (``label > 0``) as a whole.

Images (optional): a source that can crop its volumes declares the options ``images``
(bool), ``crop`` (pixels) and ``crop_spacing_mm`` (see :class:`ImageOptions`) and, when
``images = true``, returns :attr:`SourceData.images`, one crop per table row
(:mod:`spikebench.datasets.crops`). Image rules are skipped, with the reason, on a source
that does not.

:func:`~spikebench.datasets.sources.conformance.check_source` proves that a source keeps this
contract; run it in the plug-in's tests.
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from spikebench.datasets.tables import FeatureTable

if TYPE_CHECKING:
    from spikebench.datasets.crops import CropSettings, ImageRows


class SourceOptions(BaseModel):
    """Base of every source's options: strict, unknown keys forbidden, immutable."""

    # NaN and infinities are never a valid option (TOML can write them: nan, inf)
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class ImageOptions(SourceOptions):
    """Options of a source that can deliver the image view beside the feature table."""

    #: Also crop every liver slice (the image track); off by default (it costs a second pass).
    images: bool = False
    #: Crop size in pixels (square).
    crop: int = Field(64, ge=8, le=512)
    #: Pixel spacing of the crops in mm (every crop is resampled to it).
    crop_spacing_mm: float = Field(3.0, gt=0, le=20)

    def crop_settings(self) -> CropSettings:
        """The :class:`~spikebench.datasets.crops.CropSettings` of these options."""
        from spikebench.datasets.crops import CropSettings

        return CropSettings(size=self.crop, spacing_mm=float(self.crop_spacing_mm))


@dataclasses.dataclass(frozen=True)
class SourceData:
    """What a source delivers: the validated table and facts for ``protocol.json``
    (``path``, ``excluded_cases`` as ``[{"patient_id", "reason"}]``, anything else useful)."""

    table: FeatureTable
    info: dict[str, Any]
    #: The image view (:class:`~spikebench.datasets.crops.ImageRows`, one crop per table row,
    #: in table order) when the source was asked for images (``images = true``), else None.
    images: ImageRows | None = None


#: A source's options model (its :attr:`DataSource.Options`).
OptionsT = TypeVar("OptionsT", bound=SourceOptions)


class DataSource(abc.ABC, Generic[OptionsT]):
    """A cohort reader, registered in the ``spikebench.datasets`` entry-point group.
    Subclasses set :attr:`name`, :attr:`summary`, :attr:`Options` and implement :meth:`load`;
    ``DataSource[MyOptions]`` types :meth:`load`'s ``options`` as the model :attr:`Options`
    validates (``class MySource(DataSource[MyOptions])``).

    A bad input is one :class:`~spikebench.errors.DataError` naming the file and the fix; a
    source with an ``on_error`` option skips a bad case under ``on_error = "skip"`` and lists
    it in ``info["excluded_cases"]`` as ``{"patient_id", "reason"}``."""

    #: The ``[data] source`` name (also the entry-point name).
    name: ClassVar[str]
    #: One line for ``spikebench datasets``.
    summary: ClassVar[str] = ""
    #: The ``[data]`` keys besides ``source``, as a :class:`SourceOptions` model (the
    #: ``OptionsT`` of the class).
    Options: ClassVar[type[SourceOptions]] = SourceOptions
    #: Options holding paths that a spec file gives relative to its own folder.
    path_options: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def load(self, options: OptionsT, workdir: Path, *, progress: bool = False) -> SourceData:
        """Produce the feature table described by ``options`` (an instance of
        :attr:`Options`), caching anything expensive in ``workdir``."""
