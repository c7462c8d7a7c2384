"""The data-source contract: ``[data]`` options in, a validated feature table out.

A source declares its options as a pydantic model (``DataSource.Options``: the keys a
spec's ``[data]`` table may hold besides ``source``; unknown keys and bad values are errors
naming the key before any work) and implements ``DataSource.load``, which returns the
feature table with patient ids plus provenance. A source writes only inside the ``workdir``
the harness gives it (a folder of the results folder), and reads its inputs without changing
them. Features never look at the tumour label: a source that computes features from images
uses the liver ROI (``label > 0``) as a whole.

Images (optional): a source that can crop its volumes declares the options ``images``
(bool), ``crop`` (pixels) and ``crop_spacing_mm`` (see ``ImageOptions``) and, when
``images = true``, returns ``SourceData.images``, one crop per table row
(``spikebench.datasets.crops``). Image rules are skipped, with the reason, on a source
that does not.

``check_source`` proves that a source keeps this
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
    """Base of every source's options: strict, unknown keys forbidden, immutable.

    Subclass it with one field per ``[data]`` key (pydantic fields, with defaults and bounds);
    a bad key or value is an error naming it before any work.

    Examples
    --------
    >>> from pydantic import Field, ValidationError
    >>> from spikebench.datasets.sources.base import SourceOptions
    >>> class CsvFolderOptions(SourceOptions):
    ...     path: str
    ...     pattern: str = "*.csv"
    ...     min_slices: int = Field(1, ge=1)
    >>> CsvFolderOptions(path="/data/cohort").pattern
    '*.csv'
    >>> try:
    ...     CsvFolderOptions(path="/data/cohort", min_slice=3)  # a misspelt key
    ... except ValidationError as error:
    ...     print(error.errors()[0]["loc"], error.errors()[0]["type"])
    ('min_slice',) extra_forbidden
    """

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
        """The ``CropSettings`` of these options."""
        from spikebench.datasets.crops import CropSettings

        return CropSettings(size=self.crop, spacing_mm=float(self.crop_spacing_mm))


@dataclasses.dataclass(frozen=True)
class SourceData:
    """What a source delivers.

    Attributes
    ----------
    table : FeatureTable
        The validated feature table (one row per slice, patient ids, labels).
    info : dict
        Facts for ``protocol.json``: ``path``, ``excluded_cases`` as
        ``[{"patient_id", "reason"}]``, anything else useful.
    images : ImageRows or None
        One crop per table row, in table order, when the source was asked for images
        (``images = true``).

    Examples
    --------
    See ``DataSource``: ``source.load(...)`` returns one, ``data.table`` and ``data.info``.

    >>> from spikebench.datasets.sources.base import SourceData
    >>> [f.name for f in __import__("dataclasses").fields(SourceData)]
    ['table', 'info', 'images']
    """

    table: FeatureTable
    info: dict[str, Any]
    #: The image view (``ImageRows``, one crop per table row,
    #: in table order) when the source was asked for images (``images = true``), else None.
    images: ImageRows | None = None


#: A source's options model (its ``DataSource.Options``).
OptionsT = TypeVar("OptionsT", bound=SourceOptions)


class DataSource(abc.ABC, Generic[OptionsT]):
    """A cohort reader, registered in the ``spikebench.datasets`` entry-point group.

    A spec's ``[data]`` table names a source (``source = "msd"``) and gives its options; the
    source turns them into a feature table with patient ids. Subclasses set ``name``,
    ``summary``, ``Options`` and implement ``load``; ``DataSource[MyOptions]`` types
    ``load``'s ``options`` as the model ``Options`` validates
    (``class MySource(DataSource[MyOptions])``). Run
    ``spikebench.datasets.sources.conformance.check_source`` from your tests to prove
    conformance.

    A bad input is one ``DataError`` naming the file and the fix; a source with an
    ``on_error`` option skips a bad case under ``on_error = "skip"`` and lists it in
    ``info["excluded_cases"]`` as ``{"patient_id", "reason"}``.

    Attributes
    ----------
    name : str
        The ``[data] source`` name (also the entry-point name).
    summary : str
        One line for ``spikebench datasets``.
    Options : type of SourceOptions
        The ``[data]`` keys besides ``source``, as a strict pydantic model: unknown keys and
        wrong types are refused before any work.
    path_options : tuple of str
        Options holding paths that a spec gives relative to its own folder.

    Examples
    --------
    The shipped ``table`` source reads a feature table file:

    >>> import tempfile
    >>> import pandas as pd
    >>> from pathlib import Path
    >>> from spikebench.datasets.sources import get_source
    >>> tmp = Path(tempfile.mkdtemp())
    >>> pd.DataFrame({"patient_id": ["a", "a", "b", "b"], "label": [0, 1, 0, 1],
    ...               "f_0": [0.1, 0.9, 0.2, 0.7]}).to_csv(tmp / "t.csv", index=False)
    >>> source = get_source("table")
    >>> data = source.load(source.Options(path=str(tmp / "t.csv")), tmp)
    >>> data.table.X.shape, data.table.n_patients, data.info["source"]
    ((4, 1), 2, 'table')
    >>> source.Options(path="t.csv", colour="red")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for TableOptions
    ...
    """

    #: The ``[data] source`` name (also the entry-point name).
    name: ClassVar[str]
    #: One line for ``spikebench datasets``.
    summary: ClassVar[str] = ""
    #: The ``[data]`` keys besides ``source``, as a ``SourceOptions`` model (the
    #: ``OptionsT`` of the class).
    Options: ClassVar[type[SourceOptions]] = SourceOptions
    #: Options holding paths that a spec file gives relative to its own folder.
    path_options: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def load(self, options: OptionsT, workdir: Path, *, progress: bool = False) -> SourceData:
        """Produce the feature table the options describe.

        Parameters
        ----------
        options : Options
            The validated ``[data]`` keys (relative ``path_options`` already resolved from
            the spec's folder).
        workdir : Path
            A folder of the results folder for anything expensive to cache (extracted
            features, generated data); a rerun finds it there.
        progress : bool, default False
            Show progress bars.

        Returns
        -------
        SourceData
            The validated table and facts for ``protocol.json``.

        Raises
        ------
        DataError
            A bad input, naming the file and the fix.
        """
