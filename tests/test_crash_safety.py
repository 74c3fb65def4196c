"""Run folders survive a kill, a second process and `--overwrite` (issue 13).

The fault-injection tests kill real `betavae train` / `generate` / `evaluate` / `sweep`
subprocesses with SIGKILL at points found by watching their output folder (a polling
`os.scandir` walk; nothing inside betavae is patched), then check that what is left is
the old result or the whole new one, and that `--resume` gives, bit for bit, the fit an
uninterrupted run gives. The default run kills at a few chosen points; the full sweep,
one kill after every observed file event of a whole fit, is `-m slow`.
"""

from __future__ import annotations

import csv
import errno
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from betavae_core import checkpoint as ckpt
from betavae_core import manifest
from betavae_core.cli import main
from betavae_core.locking import FolderLock, holder

pytestmark = pytest.mark.usefixtures("fresh_plugins")

SMALL = ["-o", "n=400", "-o", "size=16"]
TINY = ["--latent-dim", "4", "--arch-option", "hidden=64"]
# The fault-injection fits use wider layers, so each checkpoint file takes long enough
# to write that the watcher sees the folder at every step of it.
WIDE = ["--latent-dim", "4", "--arch-option", "hidden=512", "--threads", "1"]
KILL_FIT = ["train", "shapes", *SMALL, *WIDE, "--epochs", "2", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
       "MPLBACKEND": "Agg"}


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def one_line_error(result: Result, *needles: str) -> str:
    """Exit 1 with one line (no traceback) that holds every needle; returns it."""
    assert result.exit_code == 1, f"{result.output}\n{result.exception!r}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """`--threads 1` in-process sets torch's thread count; give the next test its own."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def user_files(folder: Path) -> dict[str, bytes]:
    """Every regular file outside betavae's `.betavae/` bookkeeping."""
    return {rel: Path(e.path).read_bytes() for rel, e in manifest.walk(folder)
            if e.is_file(follow_symlinks=False)}


def assert_tidy(folder: Path) -> None:
    """No lock, no staging, no temporary file, no pending commit; every file owned."""
    meta = folder / ".betavae"
    assert not (meta / "lock").exists()
    assert not list(meta.glob("stage-*"))
    assert not [p for p in folder.rglob("*") if manifest.TMP_MARK in p.name]
    doc = json.loads((meta / "manifest.json").read_text())
    assert doc["pending"] is None
    with manifest.RunFolder(folder) as opened:
        assert opened.unowned() == []


# --- watching a folder and killing the process writing it ------------------------------
def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under `folder` (its bookkeeping too) -> (size, mtime)."""
    out: dict[str, tuple[int, int]] = {}
    stack = [(str(folder), "")]
    while stack:
        path, prefix = stack.pop()
        try:
            entries = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            for entry in entries:
                rel = prefix + entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                out[rel] = (st.st_size, st.st_mtime_ns)
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, rel + "/"))
    return out


Stop = Callable[[int, dict], bool]


def after_events(k: int) -> Stop:
    return lambda events, _tree: events >= k


def when_present(pattern: str) -> Stop:
    return lambda _events, seen: any(fnmatch.fnmatch(rel, pattern) for rel in seen)


@dataclass
class Kill:
    """A betavae command run as a subprocess, killed when `stop` says so."""

    args: list[str]
    folder: Path
    stop: Stop
    killed_at: int | None = None
    events: int = 0
    returncode: int | None = None
    stderr: str = ""
    label: str = ""
    extra: dict = field(default_factory=dict)


def run_and_kill(jobs: list[Kill], timeout: float = 240.0) -> None:
    """Start every job, watch its folder, SIGKILL it once `stop(events, tree)` holds."""
    script = "import sys; from betavae_core.cli import main; sys.exit(main())"
    procs = [subprocess.Popen([sys.executable, "-c", script, *map(str, job.args)], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for job in jobs]
    last: list[dict | None] = [None] * len(jobs)
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        for i, (job, proc) in enumerate(zip(jobs, procs, strict=True)):
            if proc.poll() is not None or job.killed_at is not None:
                continue
            seen = tree(job.folder)
            if seen != last[i]:
                last[i] = seen
                job.events += 1
                if job.stop(job.events, seen):
                    proc.send_signal(signal.SIGKILL)
                    job.killed_at = job.events
    for job, proc in zip(jobs, procs, strict=True):
        if proc.poll() is None:
            proc.kill()
        _, job.stderr = proc.communicate()
        job.returncode = proc.returncode


def phase(run: Path) -> str:
    """Where in its writes a killed fit was, read from what it left."""
    meta = run / ".betavae"
    if not (run / ckpt.CONFIG).exists():
        return "before config.json"
    doc = json.loads((meta / "manifest.json").read_text()) if (meta / "manifest.json").exists() \
        else {"pending": None}
    pointer = run / ckpt.POINTER
    at = json.loads(pointer.read_text())["epoch"] if pointer.exists() else 0
    if doc["pending"] is not None:
        return f"committing a write after checkpoint {at} (moves under way)"
    staged = [p for p in meta.glob("stage-*/*/**/*") if p.is_file()]
    if staged:
        names = sorted({p.name.split(manifest.TMP_MARK)[0].lstrip(".") for p in staged})
        return f"staging after checkpoint {at} ({', '.join(names)})"
    return f"between writes, checkpoint {at}"


# --- comparing fits ----------------------------------------------------------------------
def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def differences(a: Path, b: Path) -> list[str]:
    """How run b differs from run a: kept weights, checkpoint unit, history (bit for bit)."""
    problems = []
    for name, wa, wb in [("model.safetensors", ckpt.load_weights(a / ckpt.WEIGHTS),
                          ckpt.load_weights(b / ckpt.WEIGHTS))]:
        if wa.keys() != wb.keys() or any(not torch.equal(wa[k], wb[k]) for k in wa):
            problems.append(name)
    ua, ub = ckpt.read_checkpoint(a), ckpt.read_checkpoint(b)
    if ua.epoch != ub.epoch:
        problems.append(f"checkpoint epoch {ua.epoch} vs {ub.epoch}")
    for part in ("last", "best"):
        ta, tb = getattr(ua, part), getattr(ub, part)
        if any(not torch.equal(ta[k], tb[k]) for k in ta):
            problems.append(f"checkpoint {part} weights")
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in ua.state["history"]]
    if strip != [{k: v for k, v in r.items() if k != "seconds"} for r in ub.state["history"]]:
        problems.append("checkpoint history")
    if _rows(a / ckpt.HISTORY) != _rows(b / ckpt.HISTORY):
        problems.append("history.csv")
    return problems


def resume_after_kill(run: Path, fit_args: list[str]) -> Result:
    """What a user does next: --resume; where the folder looks empty, the same command
    again (the leftovers must not block it), then --resume if that says so (the killed
    command had committed its config.json, which the next one finishes moving)."""
    if not (run / ckpt.CONFIG).exists():
        again = invoke(*fit_args, "--out", run)
        if again.exit_code == 0 or "Pass --resume" not in again.output:
            return again
    return invoke(*fit_args, "--out", run, "--resume")


@pytest.fixture(scope="module")
def kill_reference(tmp_path_factory) -> Path:
    """The uninterrupted fit the killed-and-resumed ones must equal."""
    out = tmp_path_factory.mktemp("killref") / "run"
    result = CliRunner().invoke(main, [*KILL_FIT, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def check_kills(jobs: list[Kill], reference: Path) -> dict[str, int]:
    tried = identical = 0
    phases = []
    for job in jobs:
        if job.killed_at is None:  # it finished before the watched state came
            continue
        tried += 1
        phases.append(phase(job.folder))
        ok(resume_after_kill(job.folder, KILL_FIT))
        problems = differences(reference, job.folder)
        identical += not problems
        assert not problems, (job.label, phases[-1], problems)
        assert_tidy(job.folder)
    print(f"\nkill points tried: {tried}; resumed identically: {identical}")
    for p in sorted(set(phases)):
        print(f"  {phases.count(p)} x {p}")
    return {"tried": tried, "identical": identical}


# --- Found 1: a kill during a checkpoint write ------------------------------------------
def test_killed_training_resumes_bit_identically(tmp_path, kill_reference) -> None:
    """SIGKILL a real `betavae train` while it writes its first checkpoint unit, and while
    it moves the second into place; each `--resume` then equals the uninterrupted fit."""
    jobs = [
        Kill([*KILL_FIT, "--out", tmp_path / "a"], tmp_path / "a",
             when_present(".betavae/stage-*/*/checkpoint/epoch-000001/.state.pt*"),
             label="writing unit 1"),
        Kill([*KILL_FIT, "--out", tmp_path / "b"], tmp_path / "b",
             when_present("checkpoint/epoch-000002/*"), label="moving unit 2 into place"),
    ]
    run_and_kill(jobs)
    assert all(job.killed_at for job in jobs), [(j.label, j.returncode, j.stderr[-500:])
                                               for j in jobs]
    assert [job.returncode for job in jobs] == [-signal.SIGKILL] * 2
    left = {job.label: phase(job.folder) for job in jobs}
    assert left["writing unit 1"].startswith("staging after checkpoint 0"), left
    counts = check_kills(jobs, kill_reference)
    assert counts == {"tried": 2, "identical": 2}


# Moments inside the commit of a checkpoint that the event count may step over.
COMMIT_MOMENTS = {
    "unit 1 partly moved, no pointer yet": (["checkpoint/epoch-000001/*"],
                                             ["checkpoint/current.json"]),
    "manifest being replaced to commit unit 2": ([".betavae/.manifest.json*-tmp-*",
                                                  ".betavae/stage-*/*/checkpoint/epoch-000002/*"],
                                                 []),
    "unit 2 in place, unit 1 not yet removed": (["checkpoint/epoch-000002/state.pt",
                                                 "checkpoint/epoch-000001/*"], []),
}


def when_state(present: list[str], absent: list[str]) -> Stop:
    def stop(_events: int, seen: dict) -> bool:
        def has(pattern: str) -> bool:
            return any(fnmatch.fnmatch(rel, pattern) for rel in seen)
        return all(has(p) for p in present) and not any(has(p) for p in absent)
    return stop


@pytest.mark.slow
def test_every_kill_point_of_a_fit_resumes_bit_identically(tmp_path, kill_reference) -> None:
    """A kill after every file event an uninterrupted fit shows (both checkpoints and
    every write around them), one process at a time so the watcher sees each step, and
    at moments inside a checkpoint's commit."""
    probe = Kill([*KILL_FIT, "--out", tmp_path / "probe"], tmp_path / "probe",
                 lambda events, seen: False)
    run_and_kill([probe])
    assert probe.returncode == 0, probe.stderr[-2000:]
    total = probe.events
    jobs = [Kill([*KILL_FIT, "--out", tmp_path / f"k{k}"], tmp_path / f"k{k}",
                 after_events(k), label=f"after event {k}") for k in range(1, total)]
    jobs += [Kill([*KILL_FIT, "--out", tmp_path / f"m{i}"], tmp_path / f"m{i}",
                  when_state(*states), label=name)
             for i, (name, states) in enumerate(COMMIT_MOMENTS.items())]
    for job in jobs:
        run_and_kill([job])
    counts = check_kills(jobs, kill_reference)
    missed = [job.label for job in jobs if job.killed_at is None]
    print(f"events in an uninterrupted fit: {total}; finished before their kill point: "
          f"{len(missed)} ({', '.join(missed)})")
    assert counts["tried"] >= len(jobs) // 2  # else the watcher is not seeing the writes
    assert counts["identical"] == counts["tried"]


def test_resume_refuses_a_damaged_unit_and_names_the_file(tmp_path) -> None:
    run = tmp_path / "run"
    args = ["train", "shapes", *SMALL, *TINY, "--epochs", "2", "--quiet", "--out", run]
    ok(invoke(*args))
    unit = ckpt.read_checkpoint(run)
    state = unit.path / ckpt.UNIT_STATE
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    one_line_error(invoke(*args[:-2], "--epochs", "3", "--out", run, "--resume"),
                   "state.pt", "does not match the hash", str(run))


def test_leftovers_of_a_killed_command_never_block_the_next(tmp_path, tiny_run) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    meta = run / ".betavae"
    (meta / "stage-999999-dead" / "run").mkdir(parents=True)
    (meta / "stage-999999-dead" / "run" / "report.json").write_text("{half")
    (meta / f".manifest.json{manifest.TMP_MARK}0000").write_text("{")
    (meta / "lock").write_text(json.dumps({"pid": _dead_pid(), "command": "betavae evaluate"}))
    before = user_files(run)
    ok(invoke("evaluate", run, "--only", "rate_distortion"))
    assert_tidy(run)
    assert user_files(run)[ckpt.CONFIG] == before[ckpt.CONFIG]
    new = tmp_path / "fresh"
    (new / ".betavae" / "stage-1-x").mkdir(parents=True)  # a generate killed mid-way
    ok(invoke("generate", tiny_run, "-n", 5, "--out", new))
    assert (new / "samples.npy").is_file()


def test_a_commit_cut_short_is_finished_by_the_next_command(tmp_path, monkeypatch) -> None:
    """Interrupted after its commit point, between two moves: the next command that opens
    the folder moves the rest into place, and every file is then betavae's."""
    folder = tmp_path / "out"
    real_replace = os.replace
    moves = []

    def interrupted(src, dst):
        if ".betavae" not in str(dst):  # a move into place, not a staged write
            moves.append(dst)
            if len(moves) == 2:
                raise KeyboardInterrupt  # as a kill would stop it (no cleanup after it)
        return real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", interrupted)
        with pytest.raises(KeyboardInterrupt), manifest.output_folder(folder) as staged:
            for name in ("a.txt", "b.txt", "report.json"):
                (staged / name).write_text(name)
    doc = json.loads((folder / ".betavae" / "manifest.json").read_text())
    assert doc["pending"]["moves"] == ["a.txt", "b.txt", "report.json"]
    assert manifest.visible_entries(folder) == ["a.txt"]
    with manifest.RunFolder(folder) as opened:
        assert opened.manifest.pending is None
    assert {k: v.decode() for k, v in user_files(folder).items()} == {
        "a.txt": "a.txt", "b.txt": "b.txt", "report.json": "report.json"}
    assert_tidy(folder)


# --- whole results or nothing: evaluate, generate, sweep -------------------------------
def test_killed_generate_evaluate_and_sweep_leave_nothing_or_a_whole_result(
        tmp_path, kill_reference) -> None:
    run = tmp_path / "run"
    shutil.copytree(kill_reference, run)
    before = user_files(run)
    cands = tmp_path / "cands"
    sweep_args = ["sweep", "shapes", *SMALL, *TINY, "--betas", "0.5,4", "--epochs", "2",
                  "--quiet", "--threads", "1"]
    source = tmp_path / "gen_src"  # generate only reads a run: its own copy
    shutil.copytree(kill_reference, source)
    jobs = [
        Kill(["generate", source, "-n", 20000, "--out", cands], cands,
             when_present(".betavae/stage-*/*/means.npy"), label="generate"),
        Kill(["evaluate", run, "--only", "rate_distortion"], run,
             when_present(".betavae/stage-*/*/plots/*.png"), label="evaluate"),
        Kill([*sweep_args, "--out", tmp_path / "sw"], tmp_path / "sw",
             when_present("beta_4/checkpoint/*"), label="sweep"),
    ]
    run_and_kill(jobs)
    assert all(job.killed_at for job in jobs), [(j.label, j.returncode, j.stderr[-500:])
                                               for j in jobs]
    # generate: nothing at all, and the next generate is not blocked
    assert manifest.visible_entries(cands) == []
    ok(invoke("generate", source, "-n", 50, "--out", cands))
    ok(invoke("generate", source, "-n", 50, "--out", tmp_path / "cands2"))
    assert (cands / "samples.npy").read_bytes() == (tmp_path / "cands2" / "samples.npy"
                                                   ).read_bytes()
    assert_tidy(cands)
    # evaluate: the run is as it was (no figure, no report change), then evaluates
    assert user_files(run) == before
    ok(invoke("evaluate", run, "--only", "rate_distortion"))
    assert "evaluation" in json.loads((run / ckpt.REPORT).read_text())
    assert_tidy(run)
    # sweep: no curve yet; the finished β is kept by --resume, the other is finished
    sw = tmp_path / "sw"
    assert not (sw / "rd.csv").exists() and not (sw / "rd.png").exists()
    finished = user_files(sw / "beta_0.5")
    one_line_error(invoke(*sweep_args, "--out", sw), "not empty", "--resume", "--overwrite")
    ok(invoke(*sweep_args, "--out", sw, "--resume"))
    assert user_files(sw / "beta_0.5") == finished
    ok(invoke(*sweep_args, "--out", tmp_path / "sw_ref"))
    assert (sw / "rd.csv").read_text().replace("beta_", "") == (
        tmp_path / "sw_ref" / "rd.csv").read_text().replace("beta_", "")
    assert_tidy(sw)


GENERATOR_THAT_FAILS = """
from betavae_core import Generator, hookimpl, write_array
import numpy as np


def half_then_fail(run, samples):
    write_array(run.out_dir / "part_1.npy", np.zeros(3))
    raise RuntimeError("the generator broke half-way")


@hookimpl
def register_generators(register):
    register(Generator(name="half", domain="*", help="", generate=half_then_fail,
                       samples="none"))
"""


def test_a_failing_generator_leaves_no_output_folder(make_module, entry_points, tiny_run,
                                                     tmp_path) -> None:
    entry_points({"half": make_module(GENERATOR_THAT_FAILS)})
    result = invoke("generate", tiny_run, "-n", 5, "--generator", "half", "--out",
                    tmp_path / "out")
    assert result.exit_code != 0
    assert not (tmp_path / "out").exists()


# --- Found 2 and 3: ownership by manifest ----------------------------------------------
def test_overwrite_keeps_user_files_with_betavaes_names(tmp_path) -> None:
    run = tmp_path / "run"
    args = ["train", "shapes", *SMALL, *TINY, "--epochs", "1", "--quiet", "--out", run]
    ok(invoke(*args))
    ok(invoke("evaluate", run, "--only", "rate_distortion"))
    (run / "plots" / "x.png").write_bytes(b"my figure")  # a PNG of the user's
    config = json.loads((run / ckpt.CONFIG).read_text())
    config["note"] = "my edit"
    (run / ckpt.CONFIG).write_text(json.dumps(config))  # betavae's name, the user's edit
    before = user_files(run)
    line = one_line_error(invoke(*args, "--overwrite"), "plots/x.png (not written by betavae)",
                          "config.json (changed since betavae wrote it)", "nothing was deleted")
    assert str(run) in line
    assert user_files(run) == before
    # a folder of the user's own files, named as betavae names its own
    mine = tmp_path / "mine"
    (mine / "plots").mkdir(parents=True)
    for name in (ckpt.CONFIG, ckpt.HISTORY, "plots/history.png"):
        (mine / name).write_text(f"the user's {name}")
    before = user_files(mine)
    one_line_error(invoke(*args[:-1], mine, "--overwrite"), "config.json", "history.csv",
                   "plots/history.png")
    assert user_files(mine) == before
    # once the user's files are gone, --overwrite replaces the run
    (run / "plots" / "x.png").unlink()
    (run / ckpt.CONFIG).unlink()
    ok(invoke(*args, "--overwrite"))
    assert_tidy(run)


def test_symbolic_links_are_never_followed_or_deleted_through(tmp_path) -> None:
    run = tmp_path / "run"
    args = ["train", "shapes", *SMALL, *TINY, "--epochs", "1", "--quiet", "--out", run]
    ok(invoke(*args))
    ok(invoke("evaluate", run, "--only", "rate_distortion"))
    outside = tmp_path / "elsewhere"
    shutil.move(run / "plots", outside)  # the user moved the figures, and left a link
    (run / "plots").symlink_to(outside, target_is_directory=True)
    (tmp_path / "precious.bin").write_bytes(b"precious")
    (run / "data.bin").symlink_to(tmp_path / "precious.bin")
    kept = {p.name: p.read_bytes() for p in outside.iterdir()}
    one_line_error(invoke(*args, "--overwrite"), "plots (a symbolic link)",
                   "data.bin (a symbolic link)")
    result = invoke("evaluate", run, "--only", "rate_distortion")
    one_line_error(result, "inside a symbolic link")
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == kept
    assert (tmp_path / "precious.bin").read_bytes() == b"precious"
    assert (run / "plots").is_symlink() and (run / "data.bin").is_symlink()


def test_sweep_refuses_a_used_folder_and_resumes_or_overwrites(tmp_path) -> None:
    out = tmp_path / "sw"
    out.mkdir()
    (out / "rd.csv").write_text("my own numbers")
    def sweep_of(betas: str) -> list[str]:
        return ["sweep", "shapes", *SMALL, *TINY, "--betas", betas, "--epochs", "1", "--quiet"]

    args = sweep_of("1")
    one_line_error(invoke(*args, "--out", out), "not empty", "rd.csv", "--resume",
                   "--overwrite")
    one_line_error(invoke(*args, "--out", out, "--resume"), "rd.csv", "not written by")
    one_line_error(invoke(*args, "--out", out, "--overwrite"), "rd.csv")
    assert (out / "rd.csv").read_text() == "my own numbers"
    assert manifest.visible_entries(out) == ["rd.csv"]  # refused before fitting anything
    (out / "rd.csv").unlink()
    ok(invoke(*args, "--out", out))
    first = user_files(out)
    ok(invoke(*sweep_of("1,2"), "--out", out, "--resume"))
    after = user_files(out)
    assert {k: v for k, v in after.items() if k.startswith("beta_1/")} == {
        k: v for k, v in first.items() if k.startswith("beta_1/")}  # finished: kept
    assert any(k.startswith("beta_2/") for k in after)
    with (out / "rd.csv").open() as fh:
        assert [float(r["beta"]) for r in csv.DictReader(fh)] == [1.0, 2.0]
    ok(invoke(*args, "--out", out, "--overwrite"))
    assert not (out / "beta_2").exists()  # replaced: only what this sweep fits is there
    assert_tidy(out)


def test_singlecell_model_save_overwrite_keeps_user_files(tmp_path) -> None:
    bsc = pytest.importorskip("betavae_singlecell")
    import betavae_core as bv

    data = bv.registry("datasets").get("shapes").load(n=60, size=8, seed=0)
    fit = bv.fit(data, bv.ModelConfig.for_data(data, latent_dim=2,
                                               architecture_options={"hidden": [8]}),
                 bv.TrainConfig(epochs=1, progress=False))
    config = {**fit.config, "data": {**fit.config["data"], "attrs": {"var_names": ["g"]}}}
    model = bsc.SingleCellModel(fit.model, config, {"note": "record"})
    path = tmp_path / "m"
    model.save(path)
    model.save(path, overwrite=True)  # its own files: replaced
    (path / "domain.json").write_text('{"mine": true}')
    with pytest.raises(bv.OutputExistsError, match="domain.json"):
        model.save(path, overwrite=True)
    assert (path / "domain.json").read_text() == '{"mine": true}'


# --- Found 4: one writer per folder ------------------------------------------------------
RACER = """
import sys, time
from pathlib import Path
import torch  # import before the start signal, so both start from the same line
from betavae_core.cli import main
Path(sys.argv[1]).write_text("ready")
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
sys.argv = ["betavae", *sys.argv[3:]]
main()
"""


def test_two_processes_race_for_one_run_folder_and_exactly_one_runs(tmp_path) -> None:
    run = tmp_path / "run"
    args = ["train", "shapes", *SMALL, *TINY, "--epochs", "4", "--quiet", "--threads", "1",
            "--out", str(run)]
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / f"ready{i}"),
                               str(go), *args], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.write_text("go")
    outputs = [p.communicate(timeout=180) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outputs
    winner, loser = (0, 1) if procs[0].returncode == 0 else (1, 0)
    message = outputs[loser][1].strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert f"in use by process {procs[winner].pid}" in message, message
    assert "train" in message and str(run) in message
    assert ckpt.read_checkpoint(run).epoch == 4
    assert_tidy(run)


def test_a_holder_that_has_locked_but_not_yet_written_is_still_named(tmp_path) -> None:
    """The race CI once lost: the refused process reads the record before the winner
    writes it; it waits briefly for the record rather than naming process '?'."""
    import fcntl
    import threading

    from betavae_core.locking import FolderBusyError

    lock = tmp_path / ".betavae" / "lock"
    lock.parent.mkdir()
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # locked, nothing written yet
    record = json.dumps({"pid": 424242, "command": "betavae train late-writer"}).encode()
    writer = threading.Timer(0.3, lambda: os.pwrite(fd, record, 0))
    writer.start()
    try:
        with pytest.raises(FolderBusyError, match="in use by process 424242"):
            FolderLock(tmp_path, "train").acquire()
    finally:
        writer.join()
        os.close(fd)



def test_a_locked_file_with_a_whole_record_but_no_pid_is_refused_at_once(tmp_path) -> None:
    """Another tool's lock file (a JSON object without our pid) is not a record still
    being written: the refusal does not wait out the 2 s grace."""
    import fcntl
    import time

    from betavae_core.locking import FolderBusyError

    lock = tmp_path / ".betavae" / "lock"
    lock.parent.mkdir()
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, json.dumps({"owner": "another-tool"}).encode(), 0)
    try:
        start = time.monotonic()
        with pytest.raises(FolderBusyError, match="in use by process \\?"):
            FolderLock(tmp_path, "train").acquire()
        assert time.monotonic() - start < 1.0
    finally:
        os.close(fd)

HOLDER = """
import sys, time
from betavae_core.locking import FolderLock
FolderLock(sys.argv[1], "holder").acquire()
print("locked", flush=True)
time.sleep(120)
"""


@contextmanager
def lock_held_elsewhere(folder: Path):
    """Another process holding `folder`'s lock; yields that process."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), "--as-a-test"],
                            env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_every_writing_command_is_refused_while_another_process_holds_the_folder(
        tiny_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = user_files(run)
    train = ["train", "shapes", *SMALL, *TINY, "--epochs", "1", "--quiet"]
    with lock_held_elsewhere(run) as proc:
        needle = f"in use by process {proc.pid}"
        one_line_error(invoke("evaluate", run), needle, "--as-a-test")
        one_line_error(invoke(*train, "--out", run, "--resume"), needle)
        one_line_error(invoke(*train, "--out", run, "--overwrite"), needle)
        assert user_files(run) == before
    out = tmp_path / "out"
    with lock_held_elsewhere(out) as proc:
        one_line_error(invoke("generate", run, "-n", 5, "--out", out), str(proc.pid))
        sweep = ["sweep", "shapes", *SMALL, *TINY, "--betas", "1", "--epochs", "1", "--quiet"]
        one_line_error(invoke(*sweep, "--out", out), str(proc.pid))
        one_line_error(invoke(*train, "--out", out), str(proc.pid))
    # the holder was killed (SIGKILL): its lock file is left, and simply taken over
    assert holder(out)["purpose"] == "holder"
    ok(invoke("generate", run, "-n", 5, "--out", out))
    assert not (out / ".betavae" / "lock").exists()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path) -> None:
    folder = tmp_path / "f"
    (folder / ".betavae").mkdir(parents=True)
    dead = _dead_pid()
    (folder / ".betavae" / "lock").write_text(json.dumps({"pid": dead, "command": "x"}))
    with FolderLock(folder, "test") as lock:
        assert lock.previous["pid"] == dead
        assert holder(folder)["pid"] == os.getpid()
        with FolderLock(folder, "nested"):  # the same process may nest
            pass
        assert (folder / ".betavae" / "lock").exists()
    assert not (folder / ".betavae").exists()


# --- Found 7 / item 8: one-line errors ---------------------------------------------------
def test_bad_thread_count_is_one_line(tmp_path) -> None:
    one_line_error(invoke("train", "shapes", *SMALL, *TINY, "--threads", "-2", "--out",
                          tmp_path / "r"), "threads", "-2", ">= 1")
    assert not (tmp_path / "r").exists()


@contextmanager
def read_only(folder: Path):
    """`folder` made unwritable (chmod; for root, which ignores modes, `chattr +i`)."""
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    immutable = False
    try:
        if os.geteuid() == 0:
            immutable = subprocess.run(["chattr", "+i", str(folder)],
                                       capture_output=True).returncode == 0
            if not immutable:
                pytest.skip("running as root without chattr: cannot make a folder read-only")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(mode)


def test_read_only_output_folders_give_one_line_errors(tiny_run, tmp_path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    with read_only(out):
        one_line_error(invoke("train", "shapes", *SMALL, *TINY, "--epochs", "1", "--quiet",
                              "--out", out), "cannot write", str(out), "chmod u+w")
        one_line_error(invoke("generate", tiny_run, "-n", 5, "--out", out),
                       "cannot write", str(out))
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ok(invoke("evaluate", run, "--only", "rate_distortion"))  # has its .betavae/ now
    before = user_files(run)
    with read_only(run):
        one_line_error(invoke("evaluate", run), "cannot write", str(run))
    assert user_files(run) == before
    assert_tidy(run)


def test_a_full_disk_is_one_line_and_the_last_checkpoint_is_kept(tmp_path, monkeypatch,
                                                                 kill_reference) -> None:
    run = tmp_path / "run"
    real_fsync = os.fsync
    calls = {"n": 0}

    def full_after_the_first_checkpoint(fd):
        calls["n"] += 1
        if (run / ckpt.POINTER).exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", full_after_the_first_checkpoint)
        line = one_line_error(invoke(*KILL_FIT, "--out", run), "no space left", str(run))
    assert "checkpoint" in line
    assert ckpt.read_checkpoint(run).epoch == 1
    ok(invoke(*KILL_FIT, "--out", run, "--resume"))
    assert differences(kill_reference, run) == []
    assert_tidy(run)


def test_resuming_with_another_runs_checkpoint_is_one_line(tmp_path) -> None:
    args = ["train", "shapes", *SMALL, *TINY, "--epochs", "1", "--quiet"]
    ok(invoke(*args, "--out", tmp_path / "a"))
    ok(invoke(*args, "--out", tmp_path / "b"))
    shutil.rmtree(tmp_path / "a" / "checkpoint")
    shutil.copytree(tmp_path / "b" / "checkpoint", tmp_path / "a" / "checkpoint")
    one_line_error(invoke(*args[:-3], "--epochs", "2", "--quiet", "--out", tmp_path / "a",
                          "--resume"), "belongs to another run", "checkpoint", "--overwrite")


# --- run folders written before this change ---------------------------------------------
def _as_legacy(run: Path) -> None:
    """Rewrite a run in the layout before checkpoint units and manifests."""
    unit = ckpt.read_checkpoint(run)
    state = {k: v for k, v in unit.state.items() if k not in ("rng", "run_id", "fit")}
    shutil.rmtree(run / ".betavae")
    shutil.rmtree(run / ckpt.CHECKPOINT_DIR)
    ckpt.save_tensors(unit.last, run / ckpt.LAST_WEIGHTS)
    ckpt.save_tensors(unit.best, run / ckpt.BEST_WEIGHTS)
    torch.save(state, run / ckpt.TRAINER_STATE)


def test_an_old_run_folder_still_evaluates_generates_and_resumes_exactly(tmp_path) -> None:
    args = ["train", "shapes", *SMALL, *TINY, "--quiet"]
    ok(invoke(*args, "--epochs", "3", "--out", tmp_path / "ref"))
    old = tmp_path / "old"
    ok(invoke(*args, "--epochs", "2", "--out", old))
    _as_legacy(old)
    leftover = old / ckpt.CHECKPOINT_DIR / ".state.pt.k3x9_q2a.tmp"  # an old killed write
    leftover.write_bytes(b"half of a state")
    ok(invoke("evaluate", old))
    ok(invoke("generate", old, "-n", 5, "--out", tmp_path / "cands"))
    ok(invoke(*args, "--epochs", "3", "--out", old, "--resume"))
    assert differences(tmp_path / "ref", old) == []
    assert not (old / ckpt.TRAINER_STATE).exists()  # the old checkpoint, replaced by a unit
    assert_tidy(old)
    ok(invoke(*args, "--epochs", "3", "--out", old, "--overwrite"))  # all of it is betavae's
    assert not leftover.exists()

