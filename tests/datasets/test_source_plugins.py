"""A user adds a cohort as a data-source plug-in: installed under the entry-point group
``spikebench.datasets``, it is listed by ``spikebench datasets`` and a study runs on it."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from spikebench.cli import main

TOY = '''
"""A toy cohort: features made up from a seed, two columns carry the label."""
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from spikebench.datasets.sources import DataSource, SourceData
from spikebench.datasets.sources.base import SourceOptions
from spikebench.datasets.tables import load_feature_table


class ToyOptions(SourceOptions):
    patients: int = Field(16, ge=8)
    seed: int = 0


class ToySource(DataSource):
    name = "toy"
    summary = "toy cohort for the plug-in test"
    Options = ToyOptions

    def load(self, options, workdir: Path, *, progress=False):
        rng = np.random.default_rng(options.seed)
        rows = []
        for p in range(options.patients):
            for s in range(12):
                y = int(rng.random() < 0.3) if p % 2 else 0
                rows.append({"patient_id": f"toy{p}", "slice_idx": s, "label": y,
                             **{f"f{i}": rng.normal() + 1.5 * y * (i < 2) for i in range(6)}})
        path = workdir / "toy.parquet"
        pd.DataFrame(rows).to_parquet(path, index=False)
        return SourceData(load_feature_table(path), {"path": str(path)})
'''

SPEC = """
[study]
name = "toy"
references = ["logistic_regression"]
[data]
source = "toy"
patients = 16
[grid]
backends = ["custom"]
rules = ["surrogate"]
[split]
scheme = "holdout"
repeats = 1
[search]
trials = 2
[space.surrogate]
epochs = 2
hidden = 16
steps = 4
encoding = "direct"
"""


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """Install the toy package the way pip does: a module plus a dist-info with the entry
    point, on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "toy_cohort.py").write_text(TOY)
    dist = site / "toy_cohort-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-cohort\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("""\
        [spikebench.datasets]
        toy = toy_cohort:ToySource
        """))
    monkeypatch.syspath_prepend(str(site))
    return site


def test_a_toy_source_is_listed_and_a_study_runs_on_it(toy_plugin, tmp_path, capsys):
    assert main(["datasets"]) == 0
    listed = capsys.readouterr().out
    assert "toy" in listed and "patients, seed" in listed and "phantom" in listed
    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC)
    assert main(["study", "run", str(spec), "--out", str(tmp_path / "run")]) == 0
    results = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert set(results["status"]) == {"ok"} and len(results) == 2


def test_unknown_source_options_are_spec_errors(toy_plugin, tmp_path, capsys):
    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC.replace("patients = 16", "patients = 3\ncolour = 1"))
    assert main(["study", "run", str(spec), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "[data].patients" in err and "[data].colour: unknown key" in err
    assert not (tmp_path / "run").exists()


def test_a_table_without_patient_column_is_refused_unless_group_none(tmp_path):
    from spikebench.harness.spec import load_spec
    from spikebench.harness.study import run_study

    rows = [{"label": i % 2, "f0": float(i), "f1": float(i % 3)} for i in range(40)]
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet", index=False)
    spec = tmp_path / "s.toml"
    spec.write_text('[data]\nsource = "table"\npath = "t.parquet"\n')
    with pytest.raises(Exception, match="no patient column 'patient_id'"):
        run_study(load_spec(spec), tmp_path / "out", trials=1, progress=False)
    spec.write_text('[data]\nsource = "table"\npath = "t.parquet"\ngroup = "nope"\n')
    with pytest.raises(Exception, match="no patient column 'nope'"):
        run_study(load_spec(spec), tmp_path / "out2", trials=1, progress=False)
    spec.write_text('[data]\nsource = "table"\npath = "t.parquet"\ngroup = "none"\n')
    protocol = run_study(load_spec(spec), tmp_path / "out3", trials=1, progress=False)
    assert '"slice_level_splits": true' in (protocol / "protocol.json").read_text()


def test_a_phantom_read_by_the_msd_source_is_recorded_as_synthetic(phantom_copy, tmp_path):
    """Whatever source reads a folder spikebench generated, the record says it is a phantom
    and how it was made (the generator's parameters), so a report cannot pass it off as the
    real release."""
    from spikebench.datasets.phantom import MARKER, phantom_parameters
    from spikebench.datasets.sources import get_source

    source = get_source("msd")
    data = source.load(source.Options(path=str(phantom_copy)), tmp_path / "work")
    assert (phantom_copy / MARKER).exists()
    assert data.info["phantom"] == phantom_parameters(phantom_copy)
    assert data.info["phantom"]["cases"] >= 1 and "seed" in data.info["phantom"]
    assert phantom_parameters(tmp_path) is None  # not a phantom: nothing claimed
BROKEN_BACKEND = '''
from spikebench.backends.base import Backend
from spikebench.backends.capabilities import Capability


class VersionlessBackend(Backend):
    name = "versionless"
    capabilities = frozenset({Capability.DENSE_LIF})

    def version(self):
        raise RuntimeError("no version here")

    def build(self, spec, *, seed=0, device="cpu"):
        raise NotImplementedError
'''
ARGPARSE_SOURCE = '''
import argparse

parser = argparse.ArgumentParser(prog="cli_cohort")
parser.add_argument("--cohort", required=True)
parser.parse_args()  # at import: a script made into a plug-in
'''


@pytest.fixture
def broken_plugins(tmp_path, monkeypatch):
    """A data source that runs argparse at import and a backend whose version() raises,
    installed the way pip does."""
    site = tmp_path / "broken-site"
    site.mkdir()
    (site / "cli_cohort.py").write_text(ARGPARSE_SOURCE)
    (site / "versionless.py").write_text(BROKEN_BACKEND)
    dist = site / "broken_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugins\n"
                                   "Version: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[spikebench.datasets]\ncli_cohort = cli_cohort:Source\n"
        "[spikebench.backends]\nversionless = versionless:VersionlessBackend\n")
    monkeypatch.syspath_prepend(str(site))
    return site


@pytest.mark.parametrize(("command", "broken", "why", "others"), [
    ("datasets", "cli_cohort", "SystemExit 2", ["phantom", "msd", "table"]),
    ("backends", "versionless", "RuntimeError: no version here", ["custom"]),
    ("rules", "", "", ["surrogate", "logistic_regression"]),
])
def test_a_broken_plugin_is_one_line_and_the_rest_are_listed(broken_plugins, capsys, command,
                                                            broken, why, others):
    """Issue 26, item 10: a data source that runs argparse at import made ``spikebench
    datasets`` print its usage and exit 2 listing nothing; a backend whose ``version()``
    raises must not stop ``spikebench backends`` (or ``rules``) either."""
    assert main([command]) == 0
    captured = capsys.readouterr()
    assert "usage:" not in captured.out + captured.err and "Traceback" not in captured.err
    lines = captured.out.splitlines()
    if broken:
        mine = [ln for ln in lines if ln.startswith(broken)]
        assert len(mine) == 1 and "broken: " in mine[0] and why in mine[0], lines
    for name in others:
        assert any(ln.startswith(name) for ln in lines), (name, lines)
