"""Generate small files in the exact layout of MedMNIST v3's official ``.npz`` (the real ones
cannot be fetched here; nothing binary is committed).

Keys ``train_images``, ``train_labels``, ``val_images``, ``val_labels``, ``test_images``,
``test_labels``; images ``uint8`` ``(n, S, S)``, ``(n, S, S, 3)`` or ``(n, S, S, S)``, labels
``int`` ``(n, 1)`` (``(n, L)`` 0/1 for a multi-label task); the file is ``<flag>.npz`` at 28 px
and ``<flag>_<size>.npz`` otherwise. A sample's label shows as a brighter, larger blob in its
centre, so a classifier has something to learn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")


def medmnist_name(flag: str, size: int) -> str:
    """The file name medmnist 3 gives the ``size`` file of ``flag``."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def _image(rng: np.random.Generator, label: int, size: int, ndim: int) -> np.ndarray:
    axes = np.meshgrid(*[np.arange(size) - (size - 1) / 2] * ndim, indexing="ij")
    radius = np.sqrt(sum(a * a for a in axes))
    blob = radius < size * (0.18 + 0.08 * label)
    image = rng.normal(70, 18, (size,) * ndim)
    image[blob] += 70 + 50 * label + rng.normal(0, 10)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_arrays(flag: str = "nodulemnist3d", *, size: int = 28,
                samples: tuple[int, int, int] = (40, 12, 16), positive_share: float = 0.3,
                classes: int = 2, multi_label: int = 0, rgb: bool = False,
                seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of a MedMNIST file (module docstring); ``classes`` > 2 draws multi-class
    labels (the last class gets the blob), ``multi_label`` > 0 draws that many 0/1 columns."""
    rng = np.random.default_rng(seed)
    ndim = 3 if flag.endswith("3d") else 2
    out = {}
    for split, n in zip(SPLITS, samples):
        y = (rng.random(n) < positive_share).astype(np.int64)
        y[:2] = [0, 1]  # both classes in every split
        images = np.stack([_image(rng, int(v), size, ndim) for v in y])
        if rgb:
            images = np.stack([images, images // 2 + 20, images // 3 + 40], axis=-1)
        if multi_label:
            labels = (rng.random((n, multi_label)) < 0.2).astype(np.int64)
            labels[:, 0] = y
        elif classes > 2:
            labels = np.where(y == 1, classes - 1, rng.integers(0, classes - 1, n))[:, None]
        else:
            labels = y[:, None]
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels.astype(np.uint8)
    return out


def write_medmnist(root: str | Path, flag: str = "nodulemnist3d", *, size: int = 28,
                   **kwargs) -> Path:
    """Write ``<root>/<flag>[_<size>].npz`` (:func:`make_arrays`'s arrays); returns its path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / medmnist_name(flag, size)
    np.savez_compressed(path, **make_arrays(flag, size=size, **kwargs))
    return path
