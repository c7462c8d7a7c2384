"""A user type-checks a script that uses spikebench: every public name has its real type.

The names of ``spikebench`` are imported on first use (``import spikebench`` stays instant), yet
a type checker sees the real functions behind them: a misspelt name is an error under
``mypy --strict``, ``reveal_type`` shows a signature (never ``Any``), and a script that uses the
API correctly passes. mypy runs on the user's scripts from a folder of their own, with the
checkout as the working directory (so the checkout's ``spikebench`` is the one imported) and
errors inside spikebench silenced, as for an installed package (the package itself is checked
by ``make lint``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy comes with the test extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parent.parent

#: A script a user writes: the README's steps, typed.
GOOD = '''\
from pathlib import Path

import spikebench
from spikebench.harness.results import ResultRow


def main(root: Path) -> None:
    spikebench.write_phantom(root / "phantom", cases=4)
    result = spikebench.extract(root / "phantom", root / "features.parquet")
    out: Path = spikebench.run_study("demo", root / "results", trials=1, workers=2)
    tables: spikebench.StudyTables = spikebench.load_results(out)
    report: Path = spikebench.build_report(out, figures=False)
    print(result, len(tables.results), report, ResultRow.record)
    try:
        spikebench.run_study(root / "missing.toml", root / "x")
    except spikebench.SpikebenchError as exc:
        print(exc)
'''

#: Mistakes a type checker must catch: ``line number -> what the error names``.
BAD = '''\
import spikebench

spikebench.not_a_function()
spikebench.build_report(123)
spikebench.write_phantom("data", cases="4")
'''
BAD_LINES = {3: "not_a_function", 4: "build_report", 5: "write_phantom"}

#: Names whose type must be a real signature.
REVEALED = ("spikebench.harness.fit.fit_and_score", "spikebench.build_report",
            "spikebench.extract", "spikebench.write_phantom", "spikebench.run_study",
            "spikebench.load_results", "spikebench.StudyTables")
REVEAL = "import spikebench\nimport spikebench.harness.fit\n\n" + "".join(
    f"reveal_type({name})\n" for name in REVEALED)

#: The frameworks' own modules are not followed: this is about spikebench's names, and
#: analysing torch alone takes ~15 s.
CONFIG = """\
[mypy]

[mypy-torch.*,pandas.*,numpy.*,scipy.*,matplotlib.*,optuna.*,sklearn.*,sqlalchemy.*]
follow_imports = skip
follow_imports_for_stubs = True
"""


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy --strict on the three scripts: its output lines per script name."""
    folder = tmp_path_factory.mktemp("user")
    for name, text in (("good.py", GOOD), ("bad.py", BAD), ("reveal.py", REVEAL),
                       ("mypy.ini", CONFIG)):
        (folder / name).write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--config-file", str(folder / "mypy.ini"), "--cache-dir", str(folder / "cache"),
         "--no-error-summary", "--hide-error-context", "--no-color-output",
         str(folder / "good.py"), str(folder / "bad.py"), str(folder / "reveal.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr  # 1: errors found (bad.py), 2: a crash
    out: dict[str, list[str]] = {"good.py": [], "bad.py": [], "reveal.py": [], "": []}
    for line in proc.stdout.splitlines():
        name = Path(line.split(":", 1)[0]).name
        out[name if name in out else ""].append(line)
    return out


def test_a_misspelt_name_or_a_wrong_argument_is_an_error(mypy_output):
    errors = {int(line.split(":")[1]): line for line in mypy_output["bad.py"]
              if ": error:" in line}
    assert set(errors) == set(BAD_LINES), mypy_output["bad.py"]
    for line, name in BAD_LINES.items():
        assert name in errors[line]
    assert "[attr-defined]" in errors[3] and "[arg-type]" in errors[4]


def test_every_public_name_has_its_real_type(mypy_output):
    revealed = [re.search(r'Revealed type is "(.*)"', line)
                for line in mypy_output["reveal.py"]]
    types = [m.group(1) for m in revealed if m]
    assert len(types) == len(REVEALED), mypy_output["reveal.py"]
    for name, shown in zip(REVEALED, types):
        assert shown != "Any" and shown.startswith("def ("), (name, shown)
    assert types[0].endswith("-> spikebench.harness.fit.FitResult")
    assert types[1].endswith("-> pathlib.Path")
    assert types[2].endswith("-> spikebench.datasets.features.ExtractionResult")
    assert not [line for line in mypy_output["reveal.py"] if ": error:" in line]


def test_a_script_using_the_api_correctly_passes_strict(mypy_output):
    assert mypy_output["good.py"] == []
    assert mypy_output[""] == []
