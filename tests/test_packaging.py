"""A new user installs spikebench and uses it from Python and the shell; packaging must hold.

Steps: ``import spikebench`` (instant, no torch), ``help(spikebench.run_study)``, ``spikebench
study run demo`` (a shipped spec by name), ``--quiet`` on long commands, the citation file, and
the API example run end to end. The wheel itself is built and installed in a fresh venv by
``.ci/run`` (``spikebench demo`` from outside the checkout).
"""

from __future__ import annotations

import inspect
import json
import pydoc
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import spikebench
from spikebench.cli import _parser
from spikebench.errors import SpecError, SpikebenchError
from spikebench.studies import resolve_spec, shipped_specs

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ("run_study", "load_results", "build_report", "extract", "write_phantom")


def test_import_is_light_and_the_public_api_is_listed():
    code = ("import sys, spikebench; print(sorted(m for m in ('torch', 'pandas', 'matplotlib', "
            "'optuna') if m in sys.modules)); print(sorted(dir(spikebench)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "[]"
    for name in PUBLIC:
        assert name in spikebench.__all__ and name in out[1]


@pytest.mark.parametrize("name", PUBLIC)
def test_help_shows_the_real_docstring_and_type_hints(name):
    func = getattr(spikebench, name)
    doc = inspect.getdoc(func)
    assert doc and len(doc) > 80
    text = pydoc.render_doc(func, renderer=pydoc.plaintext)
    assert doc.splitlines()[0] in text
    sig = inspect.signature(func)
    assert sig.return_annotation is not inspect.Signature.empty
    assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()
               if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))


def test_lazy_names_are_the_implementations():
    from spikebench.datasets.features import extract_features
    from spikebench.datasets.phantom import write_phantom
    from spikebench.reports.build import build_report

    assert spikebench.extract is extract_features
    assert spikebench.write_phantom is write_phantom
    assert spikebench.build_report is build_report
    with pytest.raises(AttributeError):
        _ = spikebench.no_such_name


def test_a_shipped_spec_is_found_by_name_and_an_existing_path_wins(tmp_path, monkeypatch):
    shipped = shipped_specs()
    assert {"demo", "msd-liver", "multi-objective"} <= set(shipped)
    assert resolve_spec("demo") == resolve_spec("demo.toml") == shipped["demo"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text("[study]\nname = 'mine'\n")
    assert resolve_spec("demo") == Path("demo")  # a path that exists wins
    with pytest.raises(SpecError, match="demo, ") as info:
        resolve_spec("nope")
    assert "nope" in str(info.value) and isinstance(info.value, SpikebenchError)
    with pytest.raises(SpecError):
        resolve_spec("sub/demo")  # a path that does not exist is not a name
    (tmp_path / "msd-liver").mkdir()  # the results folder of an earlier run, say
    assert resolve_spec("msd-liver") == shipped["msd-liver"]


def test_specs_and_type_marker_are_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    assert "*.toml" in setuptools["package-data"]["spikebench.studies"]
    assert "py.typed" in setuptools["package-data"]["spikebench"]
    assert (ROOT / "spikebench" / "py.typed").exists()
    # the wheel carries how to cite spikebench (.ci/wheel-demo checks the built wheel)
    assert "CITATION.cff" in setuptools["package-data"]["spikebench"]
    assert (ROOT / "spikebench" / "CITATION.cff").read_text() == (
        ROOT / "CITATION.cff").read_text()
    manifest = (ROOT / "MANIFEST.in").read_text()
    for part in ("graft tests", "graft studies", "graft docs", "graft examples", "Makefile"):
        assert part in manifest
    project = config["project"]
    assert project["license"] == "MIT" and project["classifiers"] and project["keywords"]
    assert "docs" in project["optional-dependencies"]


@pytest.mark.parametrize("argv", [
    ["demo"], ["study", "run", "demo", "--out", "x"], ["extract", "r", "--out", "x.parquet"],
    ["phantom", "x"], ["report", "x"], ["bench"]])
def test_every_long_running_command_takes_quiet(argv):
    assert _parser().parse_args([*argv, "--quiet"]).quiet is True


def test_citation_file_is_cff_1_2_with_the_reference_study():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    for key in ("message", "title", "authors", "version", "license"):
        assert cff[key], key
    assert cff["version"] == spikebench.__version__
    ref = cff["references"][0]
    assert ref["doi"] == "10.48550/arXiv.2508.20125" and ref["authors"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{spikebench.__version__}]" in changelog


@pytest.mark.slow
def test_api_quickstart_example_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "api_quickstart.py"),
                           str(tmp_path), "--trials", "1"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "results" / "report" / "report.html").exists()
    assert "report:" in proc.stdout
    # docs/results.md's pixel-baseline figures come from this example, on such a folder
    base = subprocess.run([sys.executable, str(ROOT / "examples" / "pixel_baseline.py"),
                           str(tmp_path / "phantom"), str(tmp_path / "features.parquet")],
                          capture_output=True, text=True, timeout=600)
    assert base.returncode == 0, base.stderr[-3000:]
    aucs = [line.split(":", 1)[1] for line in base.stdout.splitlines() if "ROC-AUC" in line]
    assert len(aucs) == 2
    for row in aucs:
        values = json.loads(row)
        assert len(values) == 4 and all(0.0 <= v <= 1.0 for v in values)


SUB_PACKAGES = ("harness", "backends", "datasets", "reports", "studies")


def test_the_top_level_folders_are_one_package_tree_that_tools_follow():
    """spikebench/<folder> links to each top-level folder and src/spikebench to spikebench/, so
    mypy, IDEs and import-graph tools see one ordinary package from the checkout and through
    the editable install (a plain path entry to src/, no import hook)."""
    for folder in SUB_PACKAGES:
        link = ROOT / "spikebench" / folder
        assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve(), link
    assert (ROOT / "src" / "spikebench").resolve() == (ROOT / "spikebench").resolve()
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert find["packages"]["find"]["where"] == ["src"]


def test_every_folder_of_modules_is_a_packaged_sub_package():
    """A folder of modules without ``__init__.py`` imports in a checkout (as a namespace
    package) but is left out of the wheel; every such folder must be a real package, and
    setuptools must find every one of them."""
    from setuptools import find_packages

    found = set(find_packages(str(ROOT / "src"), include=["spikebench", "spikebench.*"]))
    on_disk: set[str] = set()
    namespace: set[str] = set()
    for folder in SUB_PACKAGES:
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.parent.relative_to(ROOT).parts
            if "__pycache__" in rel:
                continue
            if (path.parent / "__init__.py").exists():
                on_disk.add(".".join(("spikebench", *rel)))
            else:
                namespace.add("/".join(rel))
    assert not namespace, f"add __init__.py to: {sorted(namespace)}"
    assert on_disk <= found, f"not packaged: {sorted(on_disk - found)}"


def test_step_profile_example_accounts_for_the_step():
    """docs/performance.md's "where the time goes" figures come from
    examples/step_profile.py: its parts
    are all measured (positive) and, with the fixed costs, add up to about the whole step."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "step_profile.py"),
                           "--steps", "6", "--hidden", "16", "--threads", "1", "--repeats",
                           "20"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    layered, whole = proc.stdout.split("\n\n")

    def rows(text: str) -> dict[str, float]:
        return {key.strip(): float(value) for key, value in (
            line.rsplit(None, 2)[:2] for line in text.splitlines() if line.endswith(" ms"))}

    ms = rows(layered)
    for part in ("forward: input products", "forward: LIF", "backward: LIF",
                 "backward: weight gradients", "backward: input gradients",
                 "backward: bias sums", "outside: optimizer", "outside: loss"):
        assert ms[part] > 0, part
    parts = sum(v for k, v in ms.items() if k not in ("step", "floor (dense products)"))
    assert 0.8 * ms["step"] <= parts <= 1.2 * ms["step"], (parts, ms["step"])
    assert "step / floor" in layered
    totals = rows(whole)  # the default whole-network pass: forward and node are one call each
    assert "whole-network C++ pass" in whole and "step / floor" in whole
    engine = totals["forward (one call)"] + totals["backward node (one call)"]
    assert 0 < engine < totals["step"], totals


def test_network_pass_ab_example_runs_and_both_paths_agree():
    """docs/performance.md's whole-network-pass saving comes from
    examples/network_pass_ab.py: it runs,
    times both paths and finds the same weights (it exits non-zero if they differ)."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "network_pass_ab.py"),
                           "--steps", "4", "--hidden", "8", "--threads", "1", "--repeats", "5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "same weights after 25 steps each" in proc.stdout


def test_sampling_ab_example_times_every_backend_both_ways():
    """docs/performance.md's cache-refill figures come from examples/sampling_ab.py."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "sampling_ab.py"),
                           "--backends", "custom", "snntorch", "--steps", "4", "--hidden", "8",
                           "--threads", "1", "--rounds", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["custom", "snntorch"]
    assert all("call by call" in line and "back to back" in line for line in lines)


def test_optimizer_ab_example_runs_and_both_optimizers_agree():
    """docs/performance.md's LeanAdam saving comes from examples/optimizer_ab.py: it
    runs, times both
    optimizers and finds the same weights (it exits non-zero if they differ)."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "optimizer_ab.py"),
                           "--steps", "4", "--hidden", "8", "--threads", "1", "--repeats", "5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "same weights after 25 steps each" in proc.stdout


@pytest.mark.parametrize("group,module", [
    ("spikebench.backends", "spikebench.backends.registry"),
    ("spikebench.rules", "spikebench.harness.rules"),
    ("spikebench.datasets", "spikebench.datasets.sources"),
])
def test_the_built_in_fallback_equals_the_entry_points(group, module):
    """Entry points are the truth: the fallback a never-installed source tree uses lists
    exactly the built-ins pyproject.toml registers, and the install's metadata agrees."""
    from importlib import import_module
    from importlib.metadata import entry_points

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    builtin = import_module(module)._BUILTIN
    assert builtin == declared[group]
    installed = {ep.name: ep.value for ep in entry_points(group=group)
                 if ep.value.startswith("spikebench.")}
    assert installed == builtin
