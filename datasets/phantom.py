"""Synthetic liver CT in the exact Medical Segmentation Decathlon Task03 layout.

The phantom exists so the whole pipeline (reader, features, splits, training) runs without the
45 GB download, and so tests can build real-looking MSD folders. Each patient is a gzipped
NIfTI volume of int16 Hounsfield units: air, a body with subcutaneous fat and soft tissue,
a spine, and a textured liver spanning a subset of slices with enhancing vessels. About half of
the patients carry hypo- or hyper-dense lesions whose size (some tiny), contrast (±10–60 HU)
and extent vary, and noise level and liver density vary per patient, so lesion slices are
learnable but not separable by one feature.

With ``quirks=True`` the folder reproduces the real release's traps: ``._liver_K.nii.gz``
macOS resource-fork files beside every volume, volumes stored with ``scl_slope``/``scl_inter``
scaling or as float32, and affines flipping an axis (image and label share it).

Generation is vectorised numpy (one pass per volume, no voxel loops) so real-size volumes
(512×512×100) take about a second each. Output is byte-deterministic given ``seed``: gzip is
written with ``mtime=0`` and no file name.

Ownership: the folder gets a marker, ``MARKER`` (``.spikebench-phantom.json``), holding
the generation parameters, written *before* any volume and marked complete after
``dataset.json``. ``write_phantom`` never writes into a folder holding an MSD layout
without that marker (someone else's data), reuses a complete phantom made with the same
parameters, and refuses one made with other parameters, naming what changed. Every file is
written to a unique temporary name and renamed into place (``spikebench.io``), so two
processes generating the same phantom at once both succeed and leave a valid folder.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from spikebench.errors import DataError
from spikebench.io import atomic_write_bytes, atomic_write_text, refuse_foreign, write_json

LABELS = {"0": "background", "1": "liver", "2": "cancer"}
_STORAGE = ("int16", "int16_intercept", "float32", "int16_slope")
MARKER = ".spikebench-phantom.json"
"""File marking a folder as a phantom spikebench wrote, with its generation parameters."""
PHANTOM_VERSION = 1
"""Bump when the generator's output changes for the same parameters."""
_LAYOUT = ("dataset.json", "imagesTr", "labelsTr", "imagesTs")


def write_phantom(out: str | Path, cases: int = 12, *, seed: int = 0,
                  shape: tuple[int, int] = (96, 96), slices: tuple[int, int] = (24, 48),
                  test_cases: int = 2, quirks: bool = True, progress: bool = False) -> Path:
    """Write a synthetic CT data set in the Medical Segmentation Decathlon Task03 layout.

    The layout is ``dataset.json``, ``imagesTr/liver_K.nii.gz``, ``labelsTr/liver_K.nii.gz``
    and ``imagesTs/liver_K.nii.gz`` (test patients numbered after the training ones). Half of
    the training patients (rounded up) have lesions. A complete phantom with the same
    parameters already in ``out`` is reused as it is.

    Parameters
    ----------
    out : str or Path
        The folder to write.
    cases : int, default 12
        Labelled (training) volumes.
    seed : int, default 0
        Seed of every random choice: the same arguments give the same files.
    shape : tuple of int, default (96, 96)
        In-plane size of every slice, in voxels (at least 32 × 32).
    slices : tuple of int, default (24, 48)
        Inclusive range of the slice counts drawn per volume (at least 4).
    test_cases : int, default 2
        Unlabelled volumes in ``imagesTs/``, as the real release has.
    quirks : bool, default True
        Reproduce the real release's traps a reader must survive: macOS ``._*`` files beside
        the volumes, ``scl_slope``/``scl_inter`` or float32 storage, affines flipping an axis.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    DataError
        Arguments out of range, or ``out`` holds a phantom with other parameters or an MSD
        layout spikebench did not write (pick a new folder).

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> from spikebench.datasets.phantom import write_phantom
    >>> out = write_phantom(Path(tempfile.mkdtemp()) / "phantom", cases=2, test_cases=0,
    ...                     shape=(32, 32), slices=(4, 4))
    >>> sorted(p.name for p in (out / "imagesTr").glob("liver_*.nii.gz"))
    ['liver_0.nii.gz', 'liver_1.nii.gz']
    >>> json.loads((out / "dataset.json").read_text())["numTraining"]
    2
    """
    if cases < 1 or test_cases < 0:
        raise DataError(f"phantom: need cases >= 1 and test_cases >= 0, got {cases}, "
                        f"{test_cases}")
    if min(shape) < 32 or slices[0] < 4 or slices[1] < slices[0]:
        raise DataError(f"phantom: shape {shape} / slices {slices} too small; use at least "
                        "32×32 in-plane and 4 slices")
    out = Path(out)
    params = {"version": PHANTOM_VERSION, "cases": int(cases), "seed": int(seed),
              "shape": [int(v) for v in shape], "slices": [int(v) for v in slices],
              "test_cases": int(test_cases), "quirks": bool(quirks)}
    if _claim_folder(out, params):
        return out
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    master = np.random.default_rng(seed)
    lesion_flags = np.zeros(cases, dtype=bool)
    lesion_flags[: (cases + 1) // 2] = True
    lesion_flags = master.permutation(lesion_flags)
    seeds = master.integers(0, 2**63 - 1, size=cases + test_cases)
    training, test = [], []
    ids: Iterable[int] = range(cases + test_cases)
    if progress:
        from tqdm.auto import tqdm

        ids = tqdm(ids, desc="phantom", unit="vol", disable=None)  # no bar off a terminal
    for k in ids:
        rng = np.random.default_rng(int(seeds[k]))
        nz = int(rng.integers(slices[0], slices[1] + 1))
        is_train = k < cases
        hu, lab, spacing = generate_volume(rng, shape, nz,
                                           lesions=bool(is_train and lesion_flags[k]))
        storage = _STORAGE[k % len(_STORAGE)] if quirks else "int16"
        flips = (k % 3 == 2, False, k % 5 == 4) if quirks else (False, False, False)
        affine = _affine(spacing, flips, shape, nz)
        hu, lab = _apply_flips(hu, flips), _apply_flips(lab, flips)
        name = f"liver_{k}.nii.gz"
        folder = "imagesTr" if is_train else "imagesTs"
        _write_volume(out / folder / name, hu, affine, storage)
        if quirks:
            _write_resource_fork(out / folder / f"._{name}", rng)
        if is_train:
            _write_volume(out / "labelsTr" / name, lab, affine, "uint8")
            if quirks:
                _write_resource_fork(out / "labelsTr" / f"._{name}", rng)
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        else:
            test.append(f"./imagesTs/{name}")
    meta = {
        "name": "LiverPhantom",
        "description": "Synthetic liver and tumour CT in the MSD Task03 layout (spikebench)",
        "reference": "spikebench.datasets.phantom",
        "licence": "CC-BY-SA 4.0",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": LABELS,
        "numTraining": cases,
        "numTest": test_cases,
        "training": training,
        "test": test,
    }
    atomic_write_text(out / "dataset.json", json.dumps(meta, indent=4) + "\n")
    write_json(out / MARKER, {"spikebench_phantom": params, "complete": True})
    return out


def phantom_parameters(root: Path) -> dict[str, Any] | None:
    """The generator's parameters of the phantom in ``root`` (its marker file), or None when
    ``root`` is not a phantom spikebench wrote — so that whatever data source reads the
    folder, protocol.json says the data are synthetic and how they were made."""
    try:
        record = json.loads((Path(root) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    params = record.get("spikebench_phantom") if isinstance(record, dict) else None
    return dict(params) if isinstance(params, dict) else None


def _claim_folder(out: Path, params: dict[str, Any]) -> bool:
    """Make ``out`` ours or refuse it; ``True`` when it already holds this exact phantom.

    The layout is looked at *before* the marker: a concurrent writer creates the marker
    before any subfolder, so a layout seen here without a marker is truly someone else's.
    """
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; pass a folder for the phantom")
    has_layout = any((out / name).exists() for name in _LAYOUT)
    marker = out / MARKER
    # the one rule of spikebench.io: a marker that is a link, a folder or not a phantom
    # marker is not ours, and nothing in that folder is written
    refuse_foreign(marker, _is_marker, error=DataError, what="a phantom marker",
                   fix="pick a new folder for the phantom")
    if not marker.exists():
        if has_layout:
            raise DataError(f"{out}: holds an MSD layout (dataset.json / imagesTr / labelsTr) "
                            f"that spikebench did not write (no {MARKER}); refusing to "
                            "overwrite it - pick a new folder for the phantom")
        write_json(marker, {"spikebench_phantom": params, "complete": False})
        return False
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        theirs = record["spikebench_phantom"]
        complete = bool(record.get("complete"))
        if not isinstance(theirs, dict):
            raise TypeError(type(theirs).__name__)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{marker}: unreadable phantom marker ({type(exc).__name__}); pick a "
                        "new folder for the phantom") from None
    changed = [f"{key}: {theirs.get(key)!r} there, {value!r} asked"
               for key, value in params.items() if theirs.get(key) != value]
    if changed:
        raise DataError(f"{out}: holds a phantom made with other parameters "
                        f"({'; '.join(changed)}); pick a new folder, or pass the same "
                        "parameters to reuse it")
    return complete and (out / "dataset.json").is_file()


def _is_marker(path: Path) -> bool:
    record = json.loads(path.read_text(encoding="utf-8"))
    return isinstance(record, dict) and "spikebench_phantom" in record


def generate_volume(rng: np.random.Generator, shape: tuple[int, int], nz: int, *,
                    lesions: bool) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """One synthetic patient: ``(hu int16 [X, Y, Z], label uint8 [X, Y, Z], spacing mm)``.

    Coordinates are normalised to [-1, 1] in-plane, so anatomy scales with ``shape``.
    """
    from scipy import ndimage

    nx, ny = shape
    px = float(rng.uniform(0.6, 0.9))
    spacing = (px, px, float(rng.uniform(0.7, 5.0)))
    x = np.linspace(-1, 1, nx, dtype=np.float32)[:, None]
    y = np.linspace(-1, 1, ny, dtype=np.float32)[None, :]
    z = np.arange(nz, dtype=np.float32)

    # Body: ellipse with a fat rim, soft tissue inside; spine posterior.
    ax, ay = rng.uniform(0.8, 0.92), rng.uniform(0.62, 0.75)
    body_r = np.sqrt((x / ax) ** 2 + (y / ay) ** 2)
    tissue = np.full((nx, ny), -1000.0, dtype=np.float32)
    tissue[body_r < 1] = -100.0 + float(rng.normal(0, 10))
    tissue[body_r < 0.9] = float(rng.uniform(25, 45))
    spine = (x ** 2 + (y - 0.5 * ay) ** 2) < (0.11 * ay) ** 2
    tissue[spine] = float(rng.uniform(350, 700))
    vol = np.repeat(tissue[:, :, None], nz, axis=2)

    # Liver: a lobed blob on one side whose cross-section waxes and wanes over its slices.
    z0 = nz * rng.uniform(0.05, 0.25)
    z1 = nz * rng.uniform(0.75, 0.95)
    t = np.clip((z - z0) / (z1 - z0), 0, 1)
    bump = np.clip(np.sin(np.pi * t), 0, 1) ** 0.5
    scale = np.where((z >= z0) & (z <= z1), bump, 0).astype(np.float32)
    cx, cy = -0.35 * ax + rng.normal(0, 0.03), -0.08 * ay + rng.normal(0, 0.03)
    rx, ry = 0.36 * ax * rng.uniform(0.85, 1.1), 0.42 * ay * rng.uniform(0.85, 1.1)
    theta = np.arctan2(y - cy, x - cx)
    phases = rng.uniform(0, 2 * np.pi, 3)
    lobes = (1 + 0.12 * np.sin(2 * theta + phases[0]) + 0.07 * np.sin(3 * theta + phases[1])
             + 0.04 * np.sin(5 * theta + phases[2]))
    rho = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) / lobes
    liver = rho[:, :, None] < scale[None, None, :]
    label = liver.astype(np.uint8)

    liver_mean = float(rng.uniform(40, 80))
    texture_amp = float(rng.uniform(3, 9))
    texture = ndimage.gaussian_filter(rng.standard_normal((nx, ny, nz), dtype=np.float32),
                                      sigma=(2.0, 2.0, 1.0))
    texture *= texture_amp / max(float(texture.std()), 1e-6)
    vol = np.where(liver, liver_mean + texture, vol)

    # Vessels: enhancing (or hypodense) tubes crossing the liver in every patient.
    for _ in range(int(rng.integers(2, 7))):
        vx0, vy0 = cx + rng.normal(0, 0.35) * rx, cy + rng.normal(0, 0.35) * ry
        dx, dy = rng.normal(0, 0.15, 2) / max(nz, 1)
        vr = rng.uniform(0.012, 0.045)
        vc = float(rng.choice([rng.uniform(20, 70), -rng.uniform(10, 30)], p=[0.75, 0.25]))
        dist2 = (x[:, :, None] - (vx0 + dx * z)) ** 2 + (y[:, :, None] - (vy0 + dy * z)) ** 2
        vol += np.where(liver & (dist2 < vr ** 2), vc, 0).astype(np.float32)

    if lesions and liver.any():
        zs = np.flatnonzero(liver.any(axis=(0, 1)))
        for _ in range(int(rng.integers(1, 4))):
            zc = float(rng.choice(zs))
            depth = ndimage.distance_transform_edt(liver[:, :, int(zc)])
            inside = np.argwhere(depth >= 0.5 * depth.max())  # mostly within the organ
            px0, py0 = inside[rng.integers(len(inside))]
            r_frac = float(np.exp(rng.uniform(np.log(0.12), np.log(0.6))))
            rxy = r_frac * min(rx, ry)
            rz = max(0.6, r_frac * (z1 - z0) * rng.uniform(0.4, 1.2))
            contrast = float(rng.uniform(10, 60)) * (1 if rng.random() < 0.25 else -1)
            d2 = (((x[:, :, None] - x[px0, 0]) / rxy) ** 2
                  + ((y[:, :, None] - y[0, py0]) / rxy) ** 2 + ((z - zc) / rz) ** 4)  # flat-ended
            core = liver & (d2 < 1)
            profile = np.clip(3.0 * (1 - d2), 0, 1)  # soft edge
            vol += np.where(liver & (d2 < 1.0), contrast * profile, 0).astype(np.float32)
            label[core] = 2

    vol = ndimage.gaussian_filter(vol, sigma=(0.7, 0.7, 0))  # partial volume
    noise = float(rng.uniform(6, 20))
    vol += noise * rng.standard_normal(vol.shape, dtype=np.float32)
    hu = np.clip(np.rint(vol), -1024, 3071).astype(np.int16)
    return hu, label, spacing


def _affine(spacing: tuple[float, float, float], flips: tuple[bool, bool, bool],
            shape: tuple[int, int], nz: int) -> np.ndarray:
    """MSD-style affine (x and y axes negated) describing data flipped along ``flips``.

    Flipping a voxel axis negates its column and moves the origin to the other end, so the
    anatomy sits at the same world coordinates whatever the storage order.
    """
    step = np.array([-spacing[0], -spacing[1], spacing[2]])
    origin = np.array([shape[0] * spacing[0] / 2, shape[1] * spacing[1] / 2, -nz * spacing[2]])
    extent = np.array([shape[0], shape[1], nz], dtype=float) - 1
    for axis, flip in enumerate(flips):
        if flip:
            origin[axis] += step[axis] * extent[axis]
            step[axis] = -step[axis]
    aff = np.diag([*step, 1.0])
    aff[:3, 3] = origin
    return aff


def _apply_flips(arr: np.ndarray, flips: tuple[bool, bool, bool]) -> np.ndarray:
    axes = tuple(a for a, f in enumerate(flips) if f)
    return np.flip(arr, axis=axes) if axes else arr


def _write_volume(path: Path, data: np.ndarray, affine: np.ndarray, storage: str) -> None:
    """Write a gzipped NIfTI-1 with exactly the requested on-disk dtype and scaling."""
    import nibabel as nib

    slope, inter = 1.0, 0.0
    if storage == "int16_intercept":  # raw = HU + 1024, as many scanners store CT
        raw, inter = (data.astype(np.int32) + 1024).astype(np.int16), -1024.0
    elif storage == "int16_slope":  # raw = 2·HU, slope 0.5 (lossless for integer HU)
        raw, slope = (data.astype(np.int32) * 2).astype(np.int16), 0.5
    elif storage == "float32":
        raw = data.astype(np.float32)
    elif storage == "uint8":
        raw = data.astype(np.uint8)
    else:
        raw = data.astype(np.int16)
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(raw.shape)
    hdr.set_data_dtype(raw.dtype)
    hdr.set_zooms(tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0))))
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_data_offset(352)
    if storage in ("int16_intercept", "int16_slope"):
        hdr.set_slope_inter(slope, inter)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=1, mtime=0) as fh:
        fh.write(hdr.binaryblock)
        fh.write(b"\x00" * 4)  # no extensions
        fh.write(np.asfortranarray(raw).tobytes(order="F"))
    atomic_write_bytes(path, buf.getvalue())  # unique temp name + rename: concurrent-safe


def _write_resource_fork(path: Path, rng: np.random.Generator) -> None:
    """A few hundred junk bytes shaped like an AppleDouble header (what macOS tar leaves)."""
    body = rng.integers(0, 256, size=int(rng.integers(160, 480)), dtype=np.uint8).tobytes()
    atomic_write_bytes(path, b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + body)
