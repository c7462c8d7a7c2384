"""Fault injection: whatever kills, starves or confuses a study, nothing computed is lost and
nothing the user made is touched.

Kills and starvation (slow, subprocesses):

- SIGKILL of the whole process tree at random points, then a resume with a relative or an
  absolute ``--out``, under the same or another host name (``SPIKEBENCH_HOSTNAME``, as a
  restarted container gets): the resume finishes, no trial is left RUNNING, no row is lost or
  duplicated.
- Ctrl-C (SIGINT to the process group): exit code 130, one line, no worker left, resumable;
  at random moments of every long command (phantom, extract, study run, report, export).
- A full disk (a tiny tmpfs): the run stops with one line; nothing in the folder reads as
  valid unless it is, and the same folder on a larger disk resumes to the end.
- Many workers on one folder; two extracts into one cache; crop passes of two studies sharing
  a cache, one killed mid-way; every path with spaces and non-ASCII letters.

A shared disk (issue 26; fast, in-process where possible): a study resumes through any
spelling of its folder (a hypothesis property test) and on another machine; a refused run
rewrites nothing; failures that may pass (out of memory, a lost connection, a killed worker)
are retried, a cell left failed exits 3 and a rerun retries it; a read-only results folder is
read and never written; symbolic-link loops are one line each.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_text import tiny_spec

SPEC = tiny_spec("{table}", study={"name": "faults"}, search={
    "trials": 4, "heartbeat_interval": 1, "grace_period": 3, "poll_seconds": 0.2},
    space_surrogate={"epochs": 3})
#: Rows a finished study holds: the SNN cell and the reference, two repeats each.
EXPECTED_ROWS = {("custom", "surrogate", 0), ("custom", "surrogate", 1),
                 ("reference", "logistic_regression", 0),
                 ("reference", "logistic_regression", 1)}


@pytest.fixture
def spec(tmp_path, feature_table) -> Path:
    path = tmp_path / "faults.toml"
    path.write_text(SPEC.format(table=feature_table))
    return path


def _sigint_default() -> None:
    """In the child before exec: Ctrl-C's default action, as under a terminal. A test runner
    started in the background by a non-interactive shell ignores SIGINT, children inherit
    that, and Python then keeps it ignored: every Ctrl-C of these tests would be a no-op."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env() -> dict[str, str]:
    """The environment of a spikebench subprocess: this checkout's package first on the path
    (the subprocesses run in other working directories, where ``-m spikebench`` would find an
    installed copy instead of the code under test)."""
    import spikebench

    here = str(Path(spikebench.__file__).parent.parent)
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


def _start(spec: Path, out: str, cwd: Path, *, host: str | None = None,
           workers: int = 2, trials: int | None = None) -> subprocess.Popen:
    env = _env()
    env.pop("SPIKEBENCH_HOSTNAME", None)
    if host:
        env["SPIKEBENCH_HOSTNAME"] = host
    return subprocess.Popen(
        [sys.executable, "-m", "spikebench", "study", "run", str(spec), "--out", out,
         "--workers", str(workers), "--quiet",
         *(["--trials", str(trials)] if trials else [])],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: the tree is killed at once
        preexec_fn=_sigint_default)


def _group_gone(pgid: int, timeout: float = 20) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _check_complete(out: Path, trials: int = 4) -> None:
    import optuna
    from optuna.trial import TrialState

    from spikebench.harness.storage import open_storage

    results = pd.read_parquet(out / "results.parquet")
    keys = [(b, r, int(k)) for b, r, k in zip(results["backend"], results["rule"],
                                               results["repeat"], strict=True)]
    assert len(keys) == len(set(keys)), f"duplicate rows: {keys}"
    assert set(keys) == EXPECTED_ROWS, f"rows: {sorted(keys)}"
    assert (results["status"] == "ok").all(), results[["rule", "status", "reason"]]
    storage = open_storage(f"journal:{out / 'optuna.journal'}")
    study = optuna.load_study(study_name="faults/custom/surrogate", storage=storage)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert TrialState.RUNNING not in states
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) >= trials
    snn = results[results["kind"] == "snn"]
    best = max((t for t in study.trials if t.state == TrialState.COMPLETE),
               key=lambda t: t.value).number
    assert (snn["best_trial"] == best).all()  # refits came from the final best trial


@pytest.mark.slow
@pytest.mark.parametrize(("relative", "other_host"), [(True, False), (True, True),
                                                      (False, False), (False, True)])
def test_sigkill_of_the_tree_then_resume(spec, tmp_path, relative, other_host):
    rng = random.Random(f"{relative}{other_host}")
    out = tmp_path / "run"
    where = "run" if relative else str(out)
    for _ in range(1 + other_host):  # kills at random points (start-up, tuning, refits)
        victim = _start(spec, where, tmp_path)
        time.sleep(rng.uniform(3.0, 18.0))
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
        victim.communicate()
        assert _group_gone(victim.pid)
    resume = _start(spec, where, tmp_path, host="another-container" if other_host else None)
    try:
        _, err = resume.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(resume.pid, signal.SIGKILL)
        pytest.fail("the resume hung: " + (resume.communicate()[1] or "")[-2000:])
    assert resume.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    _check_complete(out)


@pytest.mark.slow
def test_more_trials_after_a_kill_redo_the_refits_whose_best_changed(spec, tmp_path):
    """A finished 2-trial study, then ``--trials 6`` killed at a random point and resumed:
    tuning reaches 6 trials and every refit comes from the final best trial."""
    first = _start(spec, "run", tmp_path, trials=2)
    assert first.communicate(timeout=240) and first.returncode == 0
    victim = _start(spec, "run", tmp_path, trials=6)
    time.sleep(random.Random(3).uniform(4.0, 14.0))
    if victim.poll() is None:
        os.killpg(victim.pid, signal.SIGKILL)
    victim.communicate()
    resume = _start(spec, "run", tmp_path, trials=6)
    _, err = resume.communicate(timeout=240)
    assert resume.returncode == 0, err[-3000:]
    _check_complete(tmp_path / "run", trials=6)


@pytest.mark.slow
def test_ctrl_c_ends_quietly_and_resumes(spec, tmp_path):
    rng = random.Random(7)
    for _ in range(2):
        run = _start(spec, "run", tmp_path)
        time.sleep(rng.uniform(4.0, 14.0))
        if run.poll() is not None:
            break
        try:
            os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        except ProcessLookupError:  # it ended between the poll and the Ctrl-C
            break
        _, err = run.communicate(timeout=60)
        if run.returncode == 0:  # the Ctrl-C came as the run was ending: it changes nothing
            assert err.strip() == "", err
            break
        assert run.returncode == 130, err
        assert err.strip() == "spikebench: interrupted; rerun the same command to resume", err
        assert _group_gone(run.pid), "a worker outlived Ctrl-C"
    resume = _start(spec, "run", tmp_path)
    _, err = resume.communicate(timeout=240)
    assert resume.returncode == 0, err[-3000:]
    _check_complete(tmp_path / "run")


@pytest.mark.slow
def test_ctrl_c_at_any_moment_exits_130_with_one_line_or_0_with_none(tmp_path):
    """Whenever Ctrl-C lands (start-up, imports, work, interpreter shut-down), the command
    ends with 130 and the one line, or, if its work was already done, 0 and nothing: never
    killed by the signal (exit -2), never a traceback."""
    command = [sys.executable, "-m", "spikebench", "rules"]
    subprocess.run(command, capture_output=True, check=True)  # warm-up: byte-compiles, caches
    durations = []
    for _ in range(3):  # the fastest warm run: on a fresh clone the first run was several
        started = time.perf_counter()  # times slower, and every Ctrl-C timed from it came late
        subprocess.run(command, capture_output=True, check=True)
        durations.append(time.perf_counter() - started)
    duration = min(durations)
    seen = set()
    for i in range(12):  # from early start-up to past the end of the work, evenly
        run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, preexec_fn=_sigint_default)
        time.sleep((0.1 + 1.0 * i / 11) * duration)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGINT)
        _, err = run.communicate(timeout=60)
        seen.add(run.returncode)
        if run.returncode == 130:
            assert err.strip() == "spikebench: interrupted; rerun the same command to resume"
        else:
            assert run.returncode == 0, (run.returncode, err)
            assert err.strip() == "", err
    assert 130 in seen, "no Ctrl-C landed while the command was working"


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


def _nothing_torn_reads_as_valid(out: Path) -> None:
    """Every table and JSON file present is whole (atomic writes); the journal loads."""
    import pyarrow.parquet as pq

    from spikebench.harness.storage import open_storage

    for path in out.rglob("*.parquet"):
        pq.read_table(path)  # raises on a torn file
    for path in out.rglob("*.json"):
        json.loads(path.read_text())
    assert not list(out.rglob("*.tmp")), "temporary files left behind"
    if (out / "optuna.journal").exists():
        open_storage(f"journal:{out / 'optuna.journal'}")  # repairs a torn tail or raises


@pytest.mark.slow
@pytest.mark.parametrize("size", ["64k", "320k"])
def test_a_full_disk_leaves_nothing_torn_and_resumes(spec, tmp_path, size):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, size)
    try:
        run = _start(spec, str(disk / "run"), tmp_path, workers=2)
        _, err = run.communicate(timeout=240)
        if run.returncode != 0:
            assert run.returncode == 2, err[-3000:]
            assert "Traceback" not in err, err[-3000:]
            lines = [ln for ln in err.splitlines() if ln.startswith("spikebench: error")]
            assert lines and any(w in err for w in ("disk is full", "No space left")), err
        if (disk / "run").exists():
            _nothing_torn_reads_as_valid(disk / "run")
            shutil.copytree(disk / "run", tmp_path / "moved", symlinks=True)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    moved = tmp_path / "moved"
    resume = _start(spec, str(moved), tmp_path)
    _, err = resume.communicate(timeout=240)
    assert resume.returncode == 0, err[-3000:]
    _check_complete(moved)


@pytest.mark.slow
def test_a_ctrl_c_swallowed_by_a_callback_reaches_the_command():
    """A Ctrl-C landing in a callback Python cannot propagate from (seen: a weakref callback of
    the import system's module locks) used to print "Exception ignored in ..." with a
    traceback and let the command end with 0; the console script's hook hands it back."""
    script = textwrap.dedent("""
        import sys, weakref
        import spikebench.cli as cli

        def listing():
            class Lock:
                pass
            lock = Lock()
            def callback(ref):
                raise KeyboardInterrupt
            ref = weakref.ref(lock, callback)
            del lock
            print("listed")

        cli.list_rules = listing
        sys.argv = ["spikebench", "rules"]
        raise SystemExit(cli.entry())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, preexec_fn=_sigint_default)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert proc.stderr.strip() == "spikebench: interrupted; rerun the same command to resume"


# -- issue 26: a shared disk (resume from any path, retries, what is never touched) -----------

PHANTOM_SPEC = """
[study]
name = "anywhere"
references = ["logistic_regression"]
eval_steps = [1.0]
[data]
source = "phantom"
cases = 6
shape = [32, 32]
[grid]
backends = ["custom"]
rules = ["surrogate"]
[split]
scheme = "holdout"
repeats = 1
[search]
trials = 1
[space.surrogate]
epochs = 2
hidden = 8
steps = 4
encoding = "direct"
"""
#: Directory names of the property test: spaces, non-ASCII letters, a combining accent.
NAMES = ("plain", "with space", "données", "Ümlaut dir", "e\u0301té", "日本")


def _run_in(cwd: Path, *argv: str) -> int:
    """``spikebench ...`` in-process from ``cwd`` (the tests' own code, not an installed one)."""
    from spikebench.cli import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        return main(list(argv))
    finally:
        os.chdir(here)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def finished_phantom_study(tmp_path_factory) -> Path:
    """A finished one-cell study on the phantom (its features table is extracted into the
    folder's data/, the case that used to carry the paths it was reached by)."""
    base = tmp_path_factory.mktemp("template")
    (base / "specs").mkdir()
    (base / "specs" / "spec.toml").write_text(PHANTOM_SPEC)
    assert _run_in(base / "specs", "study", "run", "spec.toml", "--out", "../rel/s",
                   "--quiet") == 0
    return base


def _spelling(kind: str, base: Path, folder: Path) -> tuple[Path, str]:
    """``(cwd, --out)`` reaching ``folder`` (inside ``base``) in the way ``kind`` says."""
    if kind == "relative":
        return base, os.path.relpath(folder, base)
    if kind == "absolute":
        return base, str(folder)
    if kind == "dotted":
        return base, f"./{folder.parent.name}/../{folder.parent.name}/./{folder.name}/"
    if kind == "symlink_to_folder":
        link = base / "link-to-s"
        if not link.exists():
            link.symlink_to(folder, target_is_directory=True)
        return base, "link-to-s"
    if kind == "symlink_to_parent":
        link = base / "link-to-parent"
        if not link.exists():
            link.symlink_to(folder.parent, target_is_directory=True)
        return base, str(link / folder.name)
    other = base / "elsewhere" / "deeper"  # another working directory
    other.mkdir(parents=True, exist_ok=True)
    return other, os.path.relpath(folder, other)


_COUNTER = iter(range(10**6))


@pytest.mark.usefixtures("one_torch_thread")
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), moved=st.booleans(),
       spelling=st.sampled_from(["relative", "absolute", "dotted", "symlink_to_folder",
                                 "symlink_to_parent", "other_cwd"]),
       spec_spelling=st.sampled_from(["relative", "absolute", "symlink"]))
def test_a_study_resumes_through_any_spelling_of_its_folder(
        finished_phantom_study, tmp_path_factory, name, moved, spelling, spec_spelling):
    """Property (issue 26, item 2): killed during refit after ``study run ../spec.toml --out
    ../rel/s``, the same study resumes with the folder reached in any other way — relative
    or absolute, through a symbolic link to it or to its parent, with ``.``/``..`` and a
    trailing slash, from another working directory, moved elsewhere (another machine mounting
    it), under names with spaces and non-ASCII letters — and does only the missing refit: no
    trial is rerun, no row is duplicated, and identity.json and the data it was bound to are
    never rewritten. docs/guarantees.md: "resume from any path or machine"."""
    base = tmp_path_factory.mktemp("spell") / f"{name} {next(_COUNTER)}"
    shutil.copytree(finished_phantom_study, base, symlinks=True)
    folder = base / "rel" / "s"
    if moved:  # another machine mounts the disk elsewhere
        (base / "mnt").mkdir()
        folder = Path(shutil.move(str(folder), str(base / "mnt" / "s")))
    for kind in ("rows", "predictions"):  # killed during the SNN refit
        (folder / kind / "custom__surrogate__r0.parquet").unlink()
    (folder / "models" / "custom__surrogate__r0.pt").unlink()
    (folder / "results.parquet").unlink()
    bound = {k: v for k, v in _files(folder).items()
             if k == "identity.json" or k.startswith("data/")}
    journal = (folder / "optuna.journal").read_bytes()
    cwd, out = _spelling(spelling, base, folder)
    spec = base / "specs" / "spec.toml"
    if spec_spelling == "symlink":
        (base / "spec-link.toml").symlink_to(spec)
        spec = base / "spec-link.toml"
    spec_arg = os.path.relpath(spec, cwd) if spec_spelling == "relative" else str(spec)
    assert _run_in(cwd, "study", "run", spec_arg, "--out", out, "--quiet") == 0
    after = _files(folder)
    assert {k: after[k] for k in bound} == bound  # identity and data not rewritten
    results = pd.read_parquet(folder / "results.parquet")
    keys = sorted(zip(results["backend"], results["rule"], results["repeat"], strict=True))
    assert keys == [("custom", "surrogate", 0), ("reference", "logistic_regression", 0)]
    assert (results["status"] == "ok").all()
    trials = [json.loads(line) for line in (folder / "optuna.journal").read_bytes()
              [len(journal):].splitlines()]
    assert not [op for op in trials if op.get("op_code") == 4], "a trial was run again"


def change_one_liver_voxel(root: Path, name: str, *, storage: str = "float32",
                          to: str | None = None) -> None:
    """Rewrite ``imagesTr/name`` of the MSD folder ``root`` with one liver voxel 300 HU
    brighter (``to``: under that name instead, with the label copied), stored as ``storage``."""
    import nibabel as nib

    from spikebench.datasets.phantom import _write_volume

    image = nib.load(str(root / "imagesTr" / name))
    hu = np.asarray(image.get_fdata(), dtype=np.float32)
    label = np.asarray(nib.load(str(root / "labelsTr" / name)).get_fdata())
    liver = np.argwhere(label > 0)
    hu[tuple(liver[len(liver) // 2])] += 300.0
    _write_volume(root / "imagesTr" / (to or name), hu, image.affine, storage)
    if to is not None:
        shutil.copy(root / "labelsTr" / name, root / "labelsTr" / to)


def test_a_refused_run_rewrites_nothing_of_the_bound_folder(finished_phantom_study, tmp_path,
                                                            capsys):
    """Issue 26, item 2: a run refused because the data changed (one liver voxel of a phantom
    volume changed) used to rewrite the folder's feature table first; now the folder is as it
    was, byte for byte, and the message keeps the results (no "delete this one")."""
    base = tmp_path / "study"
    shutil.copytree(finished_phantom_study, base, symlinks=True)
    folder = base / "rel" / "s"
    change_one_liver_voxel(folder / "data" / "phantom", "liver_2.nii.gz")
    before = _files(folder)
    capsys.readouterr()
    assert _run_in(base / "specs", "study", "run", "spec.toml", "--out", "../rel/s",
                   "--quiet") == 2
    err = capsys.readouterr().err
    assert "holds another study: the input data changed" in err and "delete" not in err
    assert _files(folder) == before
    assert not list((folder / "data").glob(".kept-*"))


def test_a_folder_bound_by_an_older_version_resumes_and_is_upgraded(finished_phantom_study,
                                                                    tmp_path):
    """Folders bound before identity format 2 (spec hash with the data paths, data hash of the
    table file's bytes) are recognised as the same study and upgraded, not refused."""
    import hashlib

    from spikebench.harness.folder import spec_identity
    from spikebench.harness.spec import load_spec

    base = tmp_path / "study"
    shutil.copytree(finished_phantom_study, base, symlinks=True)
    folder = base / "rel" / "s"
    spec = load_spec(base / "specs" / "spec.toml")
    legacy_hash, raw = spec_identity(spec, legacy=True)
    table = folder / "data" / "features.parquet"
    (folder / "identity.json").write_text(json.dumps({
        "spec_sha256": legacy_hash, "spec": raw,
        "data_sha256": hashlib.sha256(table.read_bytes()).hexdigest()}))
    before = table.read_bytes()
    assert _run_in(base, "study", "run", str(base / "specs" / "spec.toml"), "--out",
                   str(folder), "--quiet") == 0
    assert json.loads((folder / "identity.json").read_text())["format"] == 2
    assert table.read_bytes() == before
    protocol = json.loads((folder / "protocol.json").read_text())
    assert protocol["data"]["features"] == "data/features.parquet"  # relative to the folder


def _flaky_fit(monkeypatch, module: str, failures: int | None, message: str,
               exc: type[BaseException] = RuntimeError) -> list[int]:
    """Make ``fit_and_score`` as ``module`` calls it raise ``exc(message)`` for the SNN cell,
    ``failures`` times (None: always); returns the list counting the calls that raised."""
    import importlib

    mod = importlib.import_module(module)
    real, raised = mod.fit_and_score, []

    def flaky(plan, *args, **kwargs):
        if plan.kind == "snn" and (failures is None or len(raised) < failures):
            raised.append(1)
            raise exc(message)
        return real(plan, *args, **kwargs)

    monkeypatch.setattr(mod, "fit_and_score", flaky)
    return raised


def _tiny(tmp_path: Path, feature_table: Path, **search) -> Path:
    spec = tmp_path / "tiny.toml"
    spec.write_text(tiny_spec(feature_table, split={"repeats": 1},
                              search={"trials": 2, **search}, space_surrogate={"epochs": 2}))
    return spec


def _trials(out: Path, name: str = "tiny/custom/surrogate") -> list:
    import optuna

    from spikebench.harness.storage import open_storage

    storage = open_storage(f"journal:{out / 'optuna.journal'}")
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_trial_that_ran_out_of_gpu_memory_is_retried_with_the_same_parameters(
        tmp_path, feature_table, monkeypatch):
    """Issue 26, item 3: a trial failing with "CUDA out of memory" (a reason that may pass)
    is queued again with its parameters (Optuna's RetryFailedTrialCallback pattern: a WAITING
    trial with ``retry_history``), and the study completes. docs/guarantees.md: retries."""
    from optuna.trial import TrialState

    from spikebench.cli import main

    raised = _flaky_fit(monkeypatch, "spikebench.harness.tuning", 2,
                        "CUDA out of memory. Tried to allocate 2.00 GiB")
    out = tmp_path / "run"
    assert main(["study", "run", str(_tiny(tmp_path, feature_table)), "--out", str(out),
                 "--quiet"]) == 0
    assert len(raised) == 2
    trials = _trials(out)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [0, 1]
    assert failed[0].user_attrs["reason"].startswith("RuntimeError: CUDA out of memory")
    assert failed[0].user_attrs["passing"] == "out of memory"
    retry = trials[2]
    assert retry.state == TrialState.COMPLETE and retry.params == failed[0].params
    assert retry.system_attrs["retry_history"] == [0, 1]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2


@pytest.mark.usefixtures("one_torch_thread")
def test_a_cell_left_failed_names_its_error_exits_3_and_a_rerun_retries_it(
        tmp_path, feature_table, monkeypatch, capsys):
    """Issue 26, item 3: every trial failing with CUDA out of memory used to leave the note
    "all trials failed or were pruned", exit 0, and a clean rerun never retried (the failed
    trials tripped the failure limit at once). Now the note names the real error, retries are
    bounded (max_retry per trial, the failure limit per run), the run exits 3 naming the
    cell, and the rerun retries the cell and completes. docs/guarantees.md: retries, exit 3."""
    from spikebench.cli import EXIT_CELLS_FAILED, main

    spec, out = _tiny(tmp_path, feature_table, max_retry=1), tmp_path / "run"
    with monkeypatch.context() as patch:
        raised = _flaky_fit(patch, "spikebench.harness.tuning", None,
                            "CUDA out of memory. Tried to allocate 2.00 GiB")
        code = main(["study", "run", str(spec), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_CELLS_FAILED == 3, err
    assert "cell custom/surrogate failed: every trial of custom/surrogate failed: " \
           "RuntimeError: CUDA out of memory" in err
    assert "rerun the same command to retry them" in err and "Traceback" not in err
    assert len(raised) == 10  # the failure limit of one run: max(3 x trials, 10)
    results = pd.read_parquet(out / "results.parquet")
    note = results.loc[results["rule"] == "surrogate", "reason"].iloc[0]
    assert "CUDA out of memory" in note and "(a failure that may pass: out of memory)" in note
    assert main(["study", "run", str(spec), "--out", str(out), "--quiet"]) == 0  # GPU free
    results = pd.read_parquet(out / "results.parquet")
    assert set(results["status"]) == {"ok"} and len(results) == 2


@pytest.mark.usefixtures("one_torch_thread")
def test_a_refit_that_ran_out_of_memory_is_retried(tmp_path, feature_table, monkeypatch):
    """A refit failing with MemoryError (then passing) is run again; one failing for a bug
    (a ValueError) fails its cell at once, naming the error, and the run exits 3."""
    from spikebench.cli import main

    spec = _tiny(tmp_path, feature_table)
    raised = _flaky_fit(monkeypatch, "spikebench.harness.refit", 1, "", MemoryError)
    assert main(["study", "run", str(spec), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert len(raised) == 1
    monkeypatch.undo()
    raised = _flaky_fit(monkeypatch, "spikebench.harness.refit", None, "a bug", ValueError)
    assert main(["study", "run", str(spec), "--out", str(tmp_path / "b"), "--quiet"]) == 3
    assert len(raised) == 1  # not retried
    failed = pd.read_parquet(tmp_path / "b" / "results.parquet").query("status == 'failed'")
    assert failed["reason"].iloc[0] == "refit r0: ValueError: a bug"


# -- issue 26: not yet attacked before ----------------------------------------------------------

def _cli(argv: list[str], cwd: Path) -> subprocess.Popen:
    """``spikebench *argv`` as a user starts it (own process group, Ctrl-C's default action)."""
    return subprocess.Popen([sys.executable, "-m", "spikebench", *argv], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_sigint_default)


def _interrupt_at(argv: list[str], cwd: Path, after: float) -> None:
    """Ctrl-C ``spikebench *argv`` ``after`` seconds in: 130 and the one line, or (when it
    had finished) 0 and nothing; never a traceback, never a worker left behind."""
    run = _cli(argv, cwd)
    time.sleep(after)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    if run.returncode == 0:
        assert err.strip() == "" or "Traceback" not in err, err
    else:
        assert run.returncode == 130, (argv, run.returncode, err[-2000:])
        assert err.strip().endswith("spikebench: interrupted; rerun the same command to "
                                    "resume"), err[-2000:]
        assert "Traceback" not in err, err[-2000:]
    assert _group_gone(run.pid), f"a process of {argv[0]} outlived Ctrl-C"


def _finish(argv: list[str], cwd: Path) -> str:
    run = _cli(argv, cwd)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, (argv, err[-3000:])
    return out


@pytest.mark.slow
def test_ctrl_c_at_random_moments_of_every_long_command(tmp_path):
    """Not yet attacked before issue 26: Ctrl-C at random moments of phantom, extract, study
    run (two workers), report and export. Each ends with 130 and one line (or 0 if it was
    done), and the same command then completes with what an uninterrupted run gives."""
    import pyarrow.parquet as pq

    from spikebench.datasets.features import extract_features
    from spikebench.datasets.phantom import write_phantom

    rng = random.Random(26)
    commands = [  # (argv, its usual duration in s, how often it is interrupted)
        (["phantom", "ph", "--cases", "8", "--shape", "64", "64", "--quiet"], 1.5, 1),
        (["extract", "ph", "--out", "f.parquet", "--workers", "2", "--quiet"], 3.0, 1),
        (["study", "run", "spec.toml", "--out", "run", "--workers", "2", "--quiet"], 9.0, 2),
        (["report", "run", "--bootstrap", "20", "--quiet"], 6.0, 1),
        (["export", "run", "--to", "m.nir", "--allow-approximate"], 4.0, 1),
    ]
    (tmp_path / "spec.toml").write_text(SPEC.format(table="f.parquet"))
    for argv, duration, times in commands:
        for _ in range(times):
            _interrupt_at(argv, tmp_path, rng.uniform(0.15, 1.0) * duration)
        _finish(argv, tmp_path)
    clean = write_phantom(tmp_path / "clean", cases=8, shape=(64, 64))
    assert _files(tmp_path / "ph") == _files(clean)  # byte-deterministic, whatever was cut
    extract_features(clean, tmp_path / "clean.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "f.parquet"),
                                  pd.read_parquet(tmp_path / "clean.parquet"))
    for path in (tmp_path / "run").rglob("*.parquet"):
        pq.read_table(path)
    results = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert len(results) == len(set(zip(results["rule"], results["repeat"], strict=True))) == 4
    manifest = json.loads((tmp_path / "run" / "report" / ".spikebench-report.json").read_text())
    assert "report.html" in manifest["files"]
    assert json.loads((tmp_path / "m.nir.json").read_text())["format"] == "spikebench-nir-bundle"


@pytest.mark.slow
def test_many_workers_on_one_folder(spec, tmp_path):
    """Not yet attacked: three `study run --workers 2` on one folder at once (six workers,
    one journal): each ends with 0, and every row is there exactly once."""
    runs = [_start(spec, "run", tmp_path, workers=2) for _ in range(3)]
    for run in runs:
        _, err = run.communicate(timeout=400)
        assert run.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    _check_complete(tmp_path / "run")


CROP_PASS = """
import sys
from spikebench.datasets.crops import CropSettings, extract_crops
from spikebench.datasets.msd import training_cases
extract_crops(training_cases(sys.argv[1]), sys.argv[2], CropSettings(size=int(sys.argv[3]),
              spacing_mm=1.0))
"""


def test_crop_passes_sharing_a_cache_concurrently_and_one_killed_mid_way(tmp_path):
    """Not yet attacked: the image track's crop cache shared by two studies with different
    crop sizes and by concurrent passes of one study, one pass SIGKILLed mid-way. Every pass
    that ends gives the crops a lone pass gives; the other study's crops are never removed."""
    import numpy as np

    from spikebench.datasets.crops import CropSettings, extract_crops
    from spikebench.datasets.msd import training_cases
    from spikebench.datasets.phantom import write_phantom

    root = write_phantom(tmp_path / "ph", cases=6, shape=(96, 96), slices=(30, 40))
    cache = tmp_path / "shared"

    def crop_pass(size: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", CROP_PASS, str(root), str(cache),
                                 str(size)], stderr=subprocess.PIPE, text=True, env=_env())

    victim = crop_pass(16)
    passes = [crop_pass(16), crop_pass(24), crop_pass(24)]
    time.sleep(random.Random(5).uniform(1.0, 3.0))
    victim.kill()
    for p in passes:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    victim.wait()
    cases = training_cases(root)
    shared = {size: extract_crops(cases, cache, CropSettings(size=size, spacing_mm=1.0))
              for size in (16, 24)}
    for size in (16, 24):  # the other size's pass removed nothing of this one
        alone = extract_crops(cases, tmp_path / f"alone{size}",
                              CropSettings(size=size, spacing_mm=1.0))
        for pid, crops in alone.items():
            np.testing.assert_array_equal(np.load(shared[size][pid].path), np.load(crops.path))
            np.testing.assert_array_equal(shared[size][pid].slices, crops.slices)


def _read_only_copy(source: Path, where: Path) -> Path:
    """``source`` copied to a tmpfs at ``where`` remounted read-only (skip when not root)."""
    _mount_tmpfs(where, "64m")
    shutil.copytree(source, where / source.name, symlinks=True)
    done = subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", str(where)], check=False)
        pytest.skip(f"cannot remount read-only: {done.stderr.decode().strip()}")
    return where / source.name


def test_a_read_only_results_folder_is_read_and_never_written(finished_phantom_study,
                                                               tmp_path, capsys):
    """Not yet attacked: a results folder on a read-only disk (a colleague's, an archive).
    Reading it works — report and export elsewhere, study status — and writing into it is
    one line naming the folder and exit 2."""
    ro = tmp_path / "ro"
    folder = _read_only_copy(finished_phantom_study / "rel", ro) / "s"
    try:
        assert _run_in(tmp_path, "report", str(folder), "--out", str(tmp_path / "rep"),
                       "--bootstrap", "10", "--quiet") == 0
        assert _run_in(tmp_path, "export", str(folder), "--to", str(tmp_path / "m.nir"),
                       "--allow-approximate") == 0
        assert _run_in(tmp_path, "study", "status", str(folder)) == 0
        capsys.readouterr()
        for argv in (["report", str(folder), "--quiet"],
                     ["study", "run", str(finished_phantom_study / "specs" / "spec.toml"),
                      "--out", str(folder), "--quiet"]):
            assert _run_in(tmp_path, *argv) == 2, argv
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err, err
            assert str(folder) in err and ("read-only" in err or "cannot write" in err), err
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_symlink_loops_are_one_line_each(finished_phantom_study, tmp_path, capsys):
    """Not yet attacked: a symbolic-link loop given as (or on the way to) every path a command
    takes is one ``spikebench: error:`` line naming it, exit 2, and nothing is written."""
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    loop = tmp_path / "a"
    study = finished_phantom_study / "rel" / "s"
    spec = tmp_path / "loop.toml"
    spec.write_text(tiny_spec(loop / "features.parquet"))
    for argv in (["study", "run", str(finished_phantom_study / "specs" / "spec.toml"),
                  "--out", str(loop)],
                 ["study", "run", str(spec), "--out", str(tmp_path / "run")],
                 ["study", "run", str(loop / "spec.toml"), "--out", str(tmp_path / "run")],
                 ["report", str(study), "--out", str(loop)],
                 ["report", str(loop)],
                 ["export", str(study), "--to", str(loop), "--allow-approximate"],
                 ["export", str(study), "--to", str(loop / "m.nir"), "--allow-approximate"],
                 ["extract", str(study / "data" / "phantom"), "--out", str(loop)],
                 ["extract", str(loop), "--out", str(tmp_path / "f.parquet")],
                 ["phantom", str(loop), "--cases", "4"],
                 ["study", "status", str(loop)]):
        code = _run_in(tmp_path, *argv, *(["--quiet"] if argv[0] in (
            "report", "extract", "phantom") or argv[:2] == ["study", "run"] else []))
        err = capsys.readouterr().err
        assert code == 2, (argv, code, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (argv, err)
        assert not (tmp_path / "run").exists() and not (tmp_path / "f.parquet").exists()


@pytest.mark.slow
def test_unicode_and_spaces_in_every_path(tmp_path):
    """Not yet attacked: every command in folders whose names hold spaces, accents, a
    combining mark and CJK letters (the data, the spec, the results, the report, the export)."""
    base = tmp_path / "données du patient ü" / "e\u0301té 日本"
    base.mkdir(parents=True)
    (base / "spec ü.toml").write_text(SPEC.format(table="tàble ü.parquet"))
    for argv in (["phantom", "phantôme", "--cases", "8", "--shape", "64", "64", "--quiet"],
                 ["extract", "phantôme", "--out", "tàble ü.parquet", "--quiet"],
                 ["study", "run", "spec ü.toml", "--out", "résultats 1", "--quiet"],
                 ["report", "résultats 1", "--out", "rapport é", "--bootstrap", "10",
                  "--quiet"],
                 ["export", "résultats 1", "--to", "modèle ü.nir", "--allow-approximate"]):
        _finish(argv, base)
    assert (base / "rapport é" / "report.html").is_file()
    assert (base / "modèle ü.nir.json").is_file()


def test_two_extracts_into_one_cache_at_once(tmp_path):
    """Not yet attacked: two `spikebench extract` into the same --out (one per-case cache) at
    the same time both end with 0, and the table is the one a lone run writes."""
    from spikebench.datasets.features import extract_features
    from spikebench.datasets.phantom import write_phantom

    root = write_phantom(tmp_path / "ph", cases=6, shape=(64, 64))
    runs = [_cli(["extract", str(root), "--out", str(tmp_path / "f.parquet"), "--quiet"],
                 tmp_path) for _ in range(2)]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
    extract_features(root, tmp_path / "alone.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "f.parquet"),
                                  pd.read_parquet(tmp_path / "alone.parquet"))


@pytest.mark.usefixtures("one_torch_thread")
def test_results_are_written_with_the_users_file_mode(tmp_path, feature_table):
    """Issue 26, item 5: results.parquet, predictions.parquet, protocol.json, models ... were
    written readable by their owner only (0600, whatever the umask), so a colleague on the
    shared disk could not read them. Every file of a results folder now gets the user's mode
    (umask 027 here: 0640). docs/guarantees.md: file modes."""
    from spikebench.cli import main

    old = os.umask(0o027)
    try:
        assert main(["study", "run", str(_tiny(tmp_path, feature_table)), "--out",
                     str(tmp_path / "run"), "--quiet"]) == 0
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path / "run").as_posix(): p.stat().st_mode & 0o777
             for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert {"results.parquet", "predictions.parquet", "protocol.json", "identity.json",
            "models/custom__surrogate__r0.pt"} <= set(modes)
    assert {path: mode for path, mode in modes.items() if mode != 0o640} == {}
