"""A user points the ``medmnist`` source at MedMNIST's official ``.npz`` files: binary tasks
load directly, other tasks with an explicit positive class, 3-D volumes as central slices, the
official split in the table's ``split`` column; every bad input is one ``DataError`` naming the
file (or key) and the fix. The files are generated in the exact MedMNIST layout
(``medmnist_files``)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
from medmnist_files import make_arrays, medmnist_name, write_medmnist

from spikebench.datasets import medmnist_info
from spikebench.datasets.medmnist import download, to_window
from spikebench.datasets.medmnist_info import DatasetInfo, dataset_info
from spikebench.datasets.sources import available_sources, get_source
from spikebench.datasets.sources.conformance import BrokenInput, check_source
from spikebench.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore:.*dropping constant feature columns")


def _load(tmp_path: Path, **options):
    source = get_source("medmnist")
    return source.load(source.Options(**options), tmp_path / "work")


@pytest.fixture(scope="module")
def nodule_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("medmnist")
    write_medmnist(root, "nodulemnist3d")
    return root


def test_the_medmnist_source_is_registered_and_conforms(nodule_root, tmp_path):
    assert "medmnist" in available_sources()
    no_keys = tmp_path / "no_keys"
    no_keys.mkdir()
    arrays = make_arrays("nodulemnist3d")
    del arrays["val_labels"]
    np.savez(no_keys / "nodulemnist3d.npz", **arrays)
    flat = tmp_path / "flat"
    flat.mkdir()
    np.savez(flat / "nodulemnist3d.npz", **make_arrays("breastmnist"))  # 2-D in a 3-D file
    options = {"flag": "nodulemnist3d", "root": str(nodule_root)}
    check_source("medmnist", options, broken=[
        BrokenInput({**options, "root": str(no_keys)}, names="nodulemnist3d.npz"),
        BrokenInput({**options, "root": str(flat)}, names="nodulemnist3d.npz"),
    ])


def test_a_3d_file_becomes_central_slices_with_the_official_split(nodule_root, tmp_path):
    one = _load(tmp_path / "a", flag="nodulemnist3d", root=str(nodule_root), images=True)
    assert one.table.X.shape[0] == 40 + 12 + 16 == one.table.n_patients
    assert set(one.table.slice_idx.tolist()) == {14}
    assert one.info["official_split"] == {"train": 40, "val": 12, "test": 16}
    assert one.info["grouping"].startswith("sample = patient")
    assert "roi_area_mm2" not in one.table.feature_names and "split" not in \
        one.table.feature_names
    with np.load(nodule_root / "nodulemnist3d.npz") as npz:
        central = npz["train_images"][:, 14]
        labels = npz["test_labels"][:, 0]
    train = one.table.split == "train"
    assert np.allclose(one.images[np.flatnonzero(train)][:, 0], central / 255.0)
    assert np.array_equal(one.table.y[one.table.split == "test"], labels)
    three = _load(tmp_path / "b", flag="nodulemnist3d", root=str(nodule_root), slices=3)
    assert len(three.table.y) == 3 * 68 and three.table.n_patients == 68
    assert three.table.slice_idx[:3].tolist() == [13, 14, 15]
    assert len(set(three.table.groups[:3])) == 1


def test_a_2d_file_of_another_size_and_a_flipped_positive_class(tmp_path):
    write_medmnist(tmp_path / "mm", "breastmnist", size=64)
    assert (tmp_path / "mm" / "breastmnist_64.npz").is_file()
    data = _load(tmp_path, flag="breastmnist", size=64, root=str(tmp_path / "mm"),
                 images=True)
    assert data.images.shape[1:] == (1, 64, 64) and data.table.slice_idx.max() == 0
    flipped = _load(tmp_path / "f", flag="breastmnist", size=64, root=str(tmp_path / "mm"),
                    positive=[0])
    assert np.array_equal(flipped.table.y, 1 - data.table.y)
    with pytest.raises(DataError, match=r"positive = \[0, 1\] names every label"):
        _load(tmp_path / "g", flag="breastmnist", size=64, root=str(tmp_path / "mm"),
              positive=[0, 1])


@pytest.fixture
def installed(monkeypatch):
    """medmnist's INFO as the installed package would give it, for datasets the built-in
    table lacks (a multi-class RGB one, a multi-label one)."""
    info = {**medmnist_info.BUILTIN,
            "pathmnist": {"task": "multi-class", "n_channels": 3,
                          "label": {str(i): f"tissue {i}" for i in range(4)},
                          "n_samples": {"train": 40, "val": 12, "test": 16}, "MD5": "x"},
            "chestmnist": {"task": "multi-label, binary-class", "n_channels": 1,
                           "label": {str(i): f"finding {i}" for i in range(3)},
                           "n_samples": {"train": 40, "val": 12, "test": 16}, "MD5": "x"}}
    monkeypatch.setattr(medmnist_info, "installed_info", lambda: (info, "3.0.2"))


def test_multi_class_needs_a_positive_choice_naming_the_labels(tmp_path, installed):
    write_medmnist(tmp_path / "mm", "pathmnist", classes=4, rgb=True)
    with pytest.raises(DataError, match=r"\[data\]\.positive.*multi-class.*3 = 'tissue 3'"):
        _load(tmp_path, flag="pathmnist", root=str(tmp_path / "mm"))
    with pytest.raises(DataError, match=r"positive = \[7\].*name one or more"):
        _load(tmp_path, flag="pathmnist", root=str(tmp_path / "mm"), positive=[7])
    data = _load(tmp_path, flag="pathmnist", root=str(tmp_path / "mm"), positive=[3],
                 images=True)
    assert data.info["info_from"] == "medmnist 3.0.2" and data.info["positive"] == [3]
    with np.load(tmp_path / "mm" / "pathmnist.npz") as npz:
        assert np.array_equal(data.table.y[:40], npz["train_labels"][:, 0] == 3)
        rgb = npz["train_images"][0].astype(float)
    grey = np.rint(rgb @ [0.299, 0.587, 0.114])
    assert np.allclose(data.images[0][0] * 255, grey, atol=1e-3)


def test_multi_label_counts_any_listed_finding(tmp_path, installed):
    write_medmnist(tmp_path / "mm", "chestmnist", multi_label=3)
    data = _load(tmp_path, flag="chestmnist", root=str(tmp_path / "mm"), positive=[0, 2])
    with np.load(tmp_path / "mm" / "chestmnist.npz") as npz:
        labels = npz["train_labels"]
    assert np.array_equal(data.table.y[:40], (labels[:, [0, 2]] == 1).any(1))


def test_a_missing_file_names_the_url_and_the_target(tmp_path):
    with pytest.raises(DataError) as err:
        _load(tmp_path, flag="nodulemnist3d", size=64, root=str(tmp_path / "none"))
    text = str(err.value)
    assert str(tmp_path / "none" / "nodulemnist3d_64.npz") in text
    assert "https://zenodo.org/records/10519652/files/nodulemnist3d_64.npz" in text
    assert "download = true" in text


def test_download_fetches_checks_and_names_url_and_target_when_it_cannot(tmp_path,
                                                                          monkeypatch):
    served = write_medmnist(tmp_path / "server", "nodulemnist3d")
    digest = hashlib.md5(served.read_bytes(), usedforsecurity=False).hexdigest()
    target = tmp_path / "root" / "nodulemnist3d.npz"
    with pytest.raises(DataError, match=r"has MD5 .* not 0+"):
        download(served.as_uri(), target, "0" * 32)
    assert not target.exists() and not list(target.parent.iterdir())
    assert download(served.as_uri(), target, digest) == target
    assert target.read_bytes() == served.read_bytes()
    url = "http://127.0.0.1:9/nodulemnist3d_64.npz"
    with pytest.raises(DataError, match=f"cannot download {url}.*save it as .*_64.npz"):
        download(url, tmp_path / "root" / "nodulemnist3d_64.npz")
    # through the source: download = true fetches into root, then reads it
    monkeypatch.setattr(DatasetInfo, "url", lambda self, size: served.as_uri())
    entry = {**medmnist_info.BUILTIN["nodulemnist3d"], "MD5": digest}
    monkeypatch.setattr(medmnist_info, "installed_info",
                        lambda: ({"nodulemnist3d": entry}, "test"))
    data = _load(tmp_path, flag="nodulemnist3d", root=str(tmp_path / "fresh"), download=True)
    assert (tmp_path / "fresh" / "nodulemnist3d.npz").is_file() and len(data.table.y) == 68


@pytest.mark.parametrize("defect,match", [
    (lambda a: a.update(val_labels=np.full((12, 1), 2, np.uint8)),
     r"val_labels holds \[2\] in 1 column"),
    (lambda a: a.update(test_images=a["test_images"].astype(np.float32)), "test_images is float32"),
    (lambda a: a.update(train_labels=a["train_labels"][:5]), r"train_labels .* one integer row"),
])
def test_a_malformed_file_is_one_error_naming_it_and_the_key(tmp_path, defect, match):
    arrays = make_arrays("nodulemnist3d")
    defect(arrays)
    (tmp_path / "mm").mkdir()
    np.savez(tmp_path / "mm" / "nodulemnist3d.npz", **arrays)
    with pytest.raises(DataError, match=rf"nodulemnist3d\.npz: {match}"):
        _load(tmp_path, flag="nodulemnist3d", root=str(tmp_path / "mm"))
    (tmp_path / "mm" / "nodulemnist3d.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"nodulemnist3d\.npz: cannot read as a MedMNIST"):
        _load(tmp_path, flag="nodulemnist3d", root=str(tmp_path / "mm"))


def test_options_are_checked_before_any_work():
    from pydantic import ValidationError

    options = get_source("medmnist").Options
    with pytest.raises(ValidationError, match=r"not a MedMNIST dataset; known:.*nodulemnist3d"):
        options(flag="nodulemnist")
    with pytest.raises(ValidationError, match="must be 28, 64, 128 or 224"):
        options(flag="nodulemnist3d", size=32)
    with pytest.raises(DataError, match=r"\[data\]\.size = 128: nodulemnist3d ships sizes"):
        _load(Path("/nonexistent"), flag="nodulemnist3d", size=128)


def test_info_comes_from_medmnist_read_as_data_when_installed(tmp_path, monkeypatch):
    package = tmp_path / "site" / "medmnist"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('never imported')\n")
    (package / "info.py").write_text(
        '__version__ = "9.9"\nimport os\nos.makedirs("/never/created")\n'
        'INFO = {"nodulemnist3d": {"task": "binary-class", "label": {"0": "b", "1": "m"}, '
        '"n_channels": 1, "n_samples": {"train": 1, "val": 1, "test": 1}, "MD5": "a", '
        '"MD5_64": "b"}}\n')
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "medmnist", raising=False)
    medmnist_info.installed_info.cache_clear()
    try:
        info = dataset_info("nodulemnist3d")
        assert info.origin == "medmnist 9.9" and info.labels == {0: "b", 1: "m"}
        assert info.sizes == (28, 64) and "medmnist" not in sys.modules
        with pytest.raises(DataError, match=r"not a MedMNIST dataset; known: nodulemnist3d$"):
            dataset_info("breastmnist")
    finally:
        medmnist_info.installed_info.cache_clear()


def test_the_builtin_table_matches_the_medmnist_package_when_installed():
    found = medmnist_info.installed_info()
    if found is None:
        pytest.skip("medmnist is not installed (make test installs it with --no-deps)")
    info, _ = found
    for flag, entry in medmnist_info.BUILTIN.items():
        assert {k: v for k, v in info[flag].items() if k in entry} == entry, flag


def test_levels_map_onto_the_feature_window():
    assert to_window(np.array([0, 51, 255], np.uint8)).tolist() == [-100.0, -30.0, 250.0]
    assert medmnist_name("x", 28) == "x.npz" and medmnist_name("x", 64) == "x_64.npz"
