"""Study specs: the shipped ones validate; every mistake is a SpecError naming the key."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikebench.errors import SpecError
from spikebench.harness.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_specs_validate(path):
    spec = load_spec(path)
    assert spec.grid.backends and spec.grid.rules


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"data": {"source": "phantom", "cses": 3}}, r"\[data\]\.cses: unknown key"),
        ({"data": {"source": "dicom"}}, r"\[data\]\.source"),
        ({"data": {"source": "table"}}, r"\[data\]\.path: required key is missing"),
        ({}, r"key 'data': required key is missing"),
        ({"data": {"source": "phantom"}, "search": {"trials": "3"}}, r"\[search\]\.trials"),
        ({"data": {"source": "phantom"}, "search": {"trials": 0}}, r"\[search\]\.trials"),
        ({"data": {"source": "phantom"}, "split": {"repeats": True}}, r"\[split\]\.repeats"),
        ({"data": {"source": "phantom"}, "grid": {"backends": ["brian2"]}},
         r"unknown backend 'brian2'; installed: .*custom"),
        ({"data": {"source": "phantom"}, "grid": {"rules": ["hebb"]}},
         r"unknown rule 'hebb'; installed: .*surrogate"),
        ({"data": {"source": "phantom"}, "space": {"surrogate": {"lr": {"low": 1, "high": 0.1}}}},
         r"\[space.surrogate\]\.lr: `low <= high` must hold"),
        ({"data": {"source": "phantom"}, "space": {"surrogate": {"lr": {"low": 0, "high": 1,
                                                                         "log": True}}}},
         r"\[space.surrogate\]\.lr: `low >=? [01]` must hold for `log=True`"),
        ({"data": {"source": "phantom"}, "space": {"surrogate": {"lrr": 0.1}}},
         r"\[space.surrogate\]\.lrr: unknown parameter; known: .*lr"),
        ({"data": {"source": "phantom"}, "space": {"tempotron": {}}},
         r"\[space\] has tables for rules not in \[grid\]"),
        # a reference is tuned like any cell: a range is fine, an impossible one is not
        ({"data": {"source": "phantom"}, "space": {"mlp": {"lr": {"low": -1.0, "high": 0.1}}}},
         r"\[space.mlp\]\.lr"),
        ({"data": {"source": "phantom"}, "space": {"mlp": {"hidden": 0}}},
         r"\[space.mlp\]\.hidden"),
        ({"data": {"source": "phantom"}, "study": {"name": "a/b"}}, r"\[study\]\.name"),
    ],
)
def test_spec_errors_name_the_key(raw, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(raw)


def test_load_spec_file_errors(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = 1")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 100) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["low", "high", "log", "choices", "source", "x"]),
                      children, max_size=3),
    max_leaves=8,
)
sections = st.sampled_from(["study", "data", "grid", "split", "search", "space", "bogus"])
keys = st.sampled_from(["name", "source", "path", "trials", "repeats", "backends", "rules",
                        "surrogate", "lr", "sampler", "seed", "cases", "shape", "typo"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(sections, st.dictionaries(keys, toml_values, max_size=4), max_size=5))
def test_fuzzed_specs_raise_only_spec_errors(raw):
    with contextlib.suppress(SpecError):
        parse_spec(raw)


@pytest.mark.parametrize(("table", "key", "value"), [
    ("study", "seed", -1), ("study", "seed", 2**63 - 1), ("split", "seed", -5),
    ("data", "phantom_seed", -1), ("data", "phantom_seed", 2**40),
    ("data", "cases", 10**9), ("search", "poll_seconds", 1e-300),
    ("search", "startup_trials", 10**9), ("study", "eval_steps", [float("nan")]),
    ("analysis", "alpha", float("nan")), ("data", "min_lesion_mm2", float("inf")),
    ("study", "device", "mps"),
])
def test_out_of_range_values_are_refused_before_the_folder_is_made(tmp_path, capsys, table,
                                                                   key, value):
    """Issue 26, item 8: these values used to crash with a raw ValueError after the folder
    was bound to them (so the corrected spec was refused), or were accepted (``mps`` on a
    machine without it: every trial failed, exit 0). Each is now one ``spikebench: error:``
    line naming the key, exit 2, before ``--out`` exists."""
    import json

    import torch

    from spikebench.cli import main

    if key == "device" and torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    raw = {"data": {"source": "phantom", "cases": 6, "shape": [32, 32]},
           "search": {"trials": 1}}
    raw.setdefault(table, {})[key] = value
    lines = []
    for name, values in raw.items():
        lines.append(f"[{name}]")
        for k, v in values.items():
            text = json.dumps(v).replace("NaN", "nan").replace("Infinity", "inf")
            lines.append(f"{k} = {text}")
    spec = tmp_path / "spec.toml"
    spec.write_text("\n".join(lines) + "\n")
    code = main(["study", "run", str(spec), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("spikebench: error:") and f"[{table}]" in err and key in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()
