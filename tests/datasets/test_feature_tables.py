"""load_feature_table: CSV or parquet in, validated arrays out, one clear error otherwise."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spikebench.datasets.tables import check_splittable, load_feature_table
from spikebench.errors import DataError


def _frame(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"patient_id": [f"liver_{i // 3}" for i in range(n)],
                         "slice_idx": np.arange(n) % 3, "label": np.arange(n) % 2,
                         "a": rng.normal(size=n), "b": rng.normal(size=n)})


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_loads_parquet_and_csv(tmp_path: Path, suffix: str):
    path = tmp_path / f"t{suffix}"
    frame = _frame()
    frame.to_parquet(path, index=False) if suffix == ".parquet" else frame.to_csv(path,
                                                                                  index=False)
    table = load_feature_table(path)
    assert table.X.dtype == np.float32 and table.X.shape == (12, 2)
    assert table.y.dtype == np.int64 and set(table.y) == {0, 1}
    assert table.groups.tolist() == frame["patient_id"].tolist()
    assert table.slice_idx.tolist() == frame["slice_idx"].tolist()
    assert table.feature_names == ["a", "b"] and table.n_patients == 4
    assert table.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_fingerprint_hashes_values_not_files(tmp_path: Path):
    """Issue 26, item 2: a results folder is bound to the table's values, so the same values
    as parquet or CSV, with other parquet metadata, from another path, give one fingerprint;
    one changed value gives another."""
    frame = _frame()
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    frame.attrs["spikebench"] = {"out": str(tmp_path / "elsewhere" / "b.parquet")}
    (tmp_path / "elsewhere").mkdir()
    frame.to_parquet(tmp_path / "elsewhere" / "b.parquet", index=False)
    frame.to_csv(tmp_path / "c.csv", index=False)
    prints = {load_feature_table(p).sha256 for p in (
        tmp_path / "a.parquet", tmp_path / "elsewhere" / "b.parquet", tmp_path / "c.csv")}
    assert len(prints) == 1
    frame.loc[3, "a"] += 1e-3
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    assert load_feature_table(tmp_path / "d.parquet").sha256 not in prints


def test_extracted_table_loads(phantom_root: Path, clean_table: pd.DataFrame, tmp_path: Path):
    path = tmp_path / "f.parquet"
    clean_table.to_parquet(path, index=False)
    with warnings.catch_warnings():  # a tiny phantom may have an all-zero HU band column
        warnings.simplefilter("ignore", UserWarning)
        table = load_feature_table(path)
    assert table.X.shape[0] == len(clean_table) and table.n_patients == 6


def test_without_group_every_row_is_a_patient(tmp_path: Path):
    path = tmp_path / "t.csv"
    _frame().drop(columns="patient_id").to_csv(path, index=False)
    with pytest.warns(UserWarning, match="its own patient"):
        table = load_feature_table(path)
    assert table.groups.tolist() == [str(i) for i in range(12)]
    _frame().to_csv(path, index=False)
    table = load_feature_table(path, group=None)
    assert table.n_patients == 12


def test_constant_columns_are_dropped_with_a_warning(tmp_path: Path):
    path = tmp_path / "t.csv"
    _frame().assign(flat=3.0).to_csv(path, index=False)
    with pytest.warns(UserWarning, match=r"dropping constant feature columns \['flat'\]"):
        table = load_feature_table(path)
    assert table.feature_names == ["a", "b"] and table.dropped_constant == ["flat"]


@pytest.mark.parametrize(("change", "kwargs", "fragment"), [
    (lambda f: f.drop(columns="label"), {}, "no label column 'label'; columns present"),
    (lambda f: f, {"group": "subject"}, "no group column 'subject'"),
    (lambda f: f.assign(site="x"), {}, "non-numeric feature columns ['site']"),
    (lambda f: f.assign(a=[np.nan] * 2 + [1.0] * 10, b=[np.inf] + [0.0] * 11), {},
     "NaN/inf values in feature columns {'a': 2, 'b': 1}"),
    (lambda f: f.assign(label=np.arange(12) % 3), {}, "must be binary 0/1; found values ['2']"),
    (lambda f: f.assign(label=["yes", "no"] * 6), {}, "must be binary"),
    (lambda f: f.assign(label=0), {}, "single class"),
    (lambda f: f.assign(a=1.0, b=2.0), {}, "every feature column is constant"),
    (lambda f: f.iloc[:0], {}, "no rows"),
    (lambda f: f[["patient_id", "label"]], {}, "no feature columns"),
])
def test_table_errors(tmp_path: Path, change, kwargs, fragment):
    path = tmp_path / "t.parquet"
    change(_frame()).to_parquet(path, index=False)
    with pytest.raises(DataError) as err:
        load_feature_table(path, **kwargs)
    assert fragment in str(err.value) and str(path) in str(err.value)


def test_missing_and_unreadable_files(tmp_path: Path):
    with pytest.raises(DataError, match="feature table not found"):
        load_feature_table(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot read as parquet"):
        load_feature_table(bad)
    other = tmp_path / "t.xlsx"
    other.write_bytes(b"x")
    with pytest.raises(DataError, match="unknown table format"):
        load_feature_table(other)


def test_check_splittable(tmp_path: Path):
    path = tmp_path / "t.parquet"
    _frame().to_parquet(path, index=False)
    table = load_feature_table(path)
    check_splittable(table, min_patients=4)
    with pytest.raises(DataError, match="only 4 patients"):
        check_splittable(table, min_patients=5)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_group_ids_are_text_with_leading_zeros(tmp_path: Path, suffix: str):
    frame = _frame().assign(patient_id=["001", "01", "1", "0001"] * 3)
    path = tmp_path / f"t{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
    table = load_feature_table(path)
    assert table.n_patients == 4
    assert sorted(set(table.groups.tolist())) == ["0001", "001", "01", "1"]


def test_integer_group_ids_in_parquet_become_text(tmp_path: Path):
    path = tmp_path / "t.parquet"
    _frame().assign(patient_id=np.arange(12) // 3).to_parquet(path, index=False)
    table = load_feature_table(path)
    assert table.groups.dtype.kind == "U" and table.groups.tolist()[:4] == ["0", "0", "0", "1"]


def test_blank_or_na_like_group_ids(tmp_path: Path):
    path = tmp_path / "t.csv"
    _frame().assign(patient_id=["NA", "nan"] * 6).to_csv(path, index=False)
    assert load_feature_table(path).groups.tolist()[:2] == ["NA", "nan"]  # real ids, kept
    _frame().assign(patient_id=[""] + ["p"] * 11).to_csv(path, index=False)
    with pytest.raises(DataError, match="group column 'patient_id' has 1 empty values"):
        load_feature_table(path)


def test_values_overflowing_float32_are_an_error(tmp_path: Path):
    path = tmp_path / "t.csv"
    _frame().assign(a=[1e39] + [0.0] * 11).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_feature_table(path)
    message = str(err.value)
    assert "{'a': 1}" in message and "float32" in message and str(path) in message


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_zero_byte_table_is_one_data_error(tmp_path: Path, suffix: str):
    path = tmp_path / f"t{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="cannot read as"):
        load_feature_table(path)


def test_lesion_area_is_metadata_never_a_feature(tmp_path: Path):
    path = tmp_path / "t.parquet"
    area = np.linspace(0, 50, 12)
    _frame().assign(lesion_mm2=area).to_parquet(path, index=False)
    table = load_feature_table(path)
    assert "lesion_mm2" not in table.feature_names and table.X.shape == (12, 2)
    np.testing.assert_array_equal(table.lesion_mm2, area)
    _frame().assign(lesion_mm2=[-1.0] + [0.0] * 11).to_parquet(path, index=False)
    with pytest.raises(DataError, match="'lesion_mm2' must hold finite areas"):
        load_feature_table(path)


def test_a_source_split_column_is_metadata_one_split_per_patient(tmp_path: Path):
    path = tmp_path / "t.csv"
    frame = _frame()
    split = frame["patient_id"].map(lambda p: ["train", "val", "test"][int(p.split("_")[1]) % 3])
    frame.assign(split=split).to_csv(path, index=False)
    table = load_feature_table(path)
    assert "split" not in table.feature_names and table.split.tolist() == split.tolist()
    frame.assign(split=["train"] * 11 + ["test"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"patient '.*' has rows in the 'train' and 'test'"):
        load_feature_table(path)
    frame.assign(split=["train"] * 11 + ["holdout"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"split column 'split' must hold .* found \['holdout'\]"):
        load_feature_table(path)
