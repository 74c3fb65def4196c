"""The `betavae` command line, end to end on small data (400 shapes of 16x16 pixels)."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from betavae_core.cli import main

pytestmark = pytest.mark.usefixtures("fresh_plugins")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = ["-o", "n=400", "-o", "size=16"]
TINY = ["--latent-dim", "4", "--arch-option", "hidden=64"]
HISTORY_COLUMNS = {"epoch", "beta", "train_rate", "train_distortion", "train_elbo", "val_rate",
                   "val_distortion", "val_elbo", "kl_dim_0", "kl_dim_1", "kl_dim_2", "kl_dim_3"}
RD_COLUMNS = {"beta", "rate", "distortion", "active_units", "offdiag_mass"}


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def assert_clean_failure(result: Result, *patterns: str) -> str:
    """Non-zero exit with one line of explanation and no traceback; returns that line."""
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    line = lines[0]
    assert line.startswith("Error: ")
    for pattern in patterns:
        assert re.search(pattern, line, flags=re.IGNORECASE), (pattern, line)
    return line


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC, path


# --- help -------------------------------------------------------------------------------
@pytest.mark.parametrize("command, mentions", [
    ([], ["plugins", "datasets", "train", "evaluate", "sweep", "generate", "--version"]),
    (["plugins"], ["--json"]),
    (["datasets"], ["--json"]),
    (["train"], ["DATA", "--beta", "--latent-dim", "--epochs", "--out", "--resume",
                 "--overwrite", "--likelihood", "--arch-option", "--option", "--loader"]),
    (["evaluate"], ["RUN_DIR", "--data", "--only", "--loader"]),
    (["sweep"], ["DATA", "--betas", "--out", "--epochs", "--latent-dim"]),
    (["generate"], ["RUN_DIR", "-n", "--out", "--generator", "--seed"]),
])
def test_help(command: list[str], mentions: list[str]) -> None:
    result = ok(invoke(*command, "--help"))
    for word in mentions:
        assert re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", result.output), word
    assert invoke(*command, "-h").output == result.output


# --- datasets ---------------------------------------------------------------------------
def test_datasets_json_lists_shapes_and_the_numpy_loader() -> None:
    rows = json.loads(ok(invoke("datasets", "--json")).stdout)
    by_name = {r["name"]: r for r in rows}
    shapes = by_name["shapes"]
    assert shapes["kind"] == "dataset"
    assert shapes["has_factors"] is True
    assert shapes["plugin"] == "betavae_core"
    assert {"n", "size", "seed"} <= set(shapes["options"])
    numpy_loader = by_name["numpy"]
    assert numpy_loader["kind"] == "loader" and numpy_loader["plugin"] == "betavae_core"

    text = ok(invoke("datasets")).output
    assert re.search(r"^\s+shapes\s+betavae_core\s+factors\b", text, flags=re.MULTILINE)
    assert re.search(r"^\s+numpy\s+betavae_core\b", text, flags=re.MULTILINE)


# --- train ------------------------------------------------------------------------------
def test_train_writes_a_run_and_refuses_to_overwrite_it(tmp_path: Path, snapshot) -> None:
    out = tmp_path / "run"
    args = ["train", "shapes", *SMALL, "--epochs", 3, *TINY, "--out", out, "--quiet"]
    ok(invoke(*args))
    for name in ("config.json", "model.safetensors", "history.csv", "report.json"):
        assert (out / name).is_file(), name

    config = json.loads((out / "config.json").read_text())
    assert config["model"]["latent_dim"] == 4
    assert config["model"]["event_shape"] == [16, 16]
    assert config["source"] == {"kind": "dataset", "name": "shapes",
                                "options": {"n": 400, "size": 16, "seed": 0}}
    assert config["train"]["epochs"] == 3

    columns, rows = read_csv(out / "history.csv")
    assert HISTORY_COLUMNS <= set(columns)
    assert "kl_dim_4" not in columns
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for r in rows:
        assert float(r["beta"]) == 1.0
        rate, distortion = float(r["val_rate"]), float(r["val_distortion"])
        assert rate >= 0 and math.isfinite(distortion)
        assert float(r["val_elbo"]) == pytest.approx(-(rate + distortion), rel=1e-6)
        assert sum(float(r[f"kl_dim_{j}"]) for j in range(4)) == pytest.approx(rate, abs=1e-6)

    report = json.loads((out / "report.json").read_text())
    assert report["epochs_run"] == 3
    assert report["n_train"] + report["n_val"] == 400

    before = snapshot(out)
    line = assert_clean_failure(invoke(*args), "--resume", "--overwrite")
    assert str(out) in line
    assert snapshot(out) == before


# --- evaluate ---------------------------------------------------------------------------
def test_evaluate_writes_the_evaluation_section_and_png_plots(tiny_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ok(invoke("evaluate", run))
    report = json.loads((run / "report.json").read_text())
    assert report["epochs_run"] == 3  # the training section is kept
    section = report["evaluation"]
    assert section["data"]["split"] == "validation"
    assert section["n_items"] == report["n_val"]
    results = section["results"]
    assert {"rate_distortion", "posterior", "disentanglement", "images"} <= set(results)
    rd = results["rate_distortion"]
    assert rd["plugin"] == "betavae_core"
    assert rd["rate"] >= 0 and math.isfinite(rd["distortion"])
    assert rd["elbo"] == pytest.approx(-(rd["rate"] + rd["distortion"]), rel=1e-6)
    assert len(rd["kl_per_dim"]) == 4
    assert 0 <= results["posterior"]["active_units"] <= 4
    assert 0 <= results["disentanglement"]["mig"] <= 1
    assert results["images"]["n_shown"] > 0

    pngs = sorted((run / "plots").glob("*.png"))
    assert len(pngs) >= 4
    for png in pngs:
        assert_png(png)
    listed = [f for entry in results.values() for f in entry.get("figures", [])]
    assert len(listed) == len(pngs) - 1  # every figure but history.png is listed
    for rel in listed:
        assert_png(run / rel)
    assert_png(run / "plots" / "history.png")


# --- sweep ------------------------------------------------------------------------------
def test_sweep_writes_the_rate_distortion_curve(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    # lr 0.01 so that three epochs leave the posterior informative (not collapsed), which
    # makes the ordering of the rates a property of β rather than of noise.
    ok(invoke("sweep", "shapes", *SMALL, "--betas", "0.5,4", "--epochs", 3, *TINY,
              "--lr", "0.01", "--out", out, "--quiet"))
    columns, rows = read_csv(out / "rd.csv")
    assert RD_COLUMNS <= set(columns)
    assert [float(r["beta"]) for r in rows] == [0.5, 4.0]
    rate = {float(r["beta"]): float(r["rate"]) for r in rows}
    assert rate[4.0] < rate[0.5]
    for r in rows:
        assert math.isfinite(float(r["distortion"])) and float(r["offdiag_mass"]) >= 0
        assert 0 <= int(r["active_units"]) <= 4
    assert_png(out / "rd.png")
    for beta in (0.5, 4):
        config = json.loads((out / f"beta_{beta:g}" / "config.json").read_text())
        assert config["objective"]["beta"] == beta


# --- generate ---------------------------------------------------------------------------
def test_generate_writes_candidates_once(tiny_run, tmp_path: Path, snapshot) -> None:
    run_before = snapshot(tiny_run)
    out = tmp_path / "cands"
    ok(invoke("generate", tiny_run, "-n", 50, "--out", out))
    samples = np.load(out / "samples.npy")
    assert samples.shape == (50, 16, 16)
    assert set(np.unique(samples).tolist()) <= {0.0, 1.0}  # Bernoulli draws
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 50 and summary["event_shape"] == [16, 16]
    assert summary["valid"] == 50

    before = snapshot(out)
    assert_clean_failure(invoke("generate", tiny_run, "-n", 50, "--out", out), "--out")
    assert snapshot(out) == before
    assert snapshot(tiny_run) == run_before  # generating never touches the run

    again = tmp_path / "again"
    ok(invoke("generate", tiny_run, "-n", 50, "--out", again))
    np.testing.assert_array_equal(np.load(again / "samples.npy"), samples)  # same seed


# --- bad input --------------------------------------------------------------------------
def _binary_items(n: int = 20, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 16, 16)) < 0.3).astype(np.float32)


def _unknown_dataset(tmp: Path) -> list[str]:
    return ["no_such_dataset"]


def _unclaimed_path(tmp: Path) -> list[str]:
    path = tmp / "notes.npy"  # the extension says numpy; the content does not
    path.write_text("these are my notes, not an array\n")
    return [str(path)]


def _nan_npy(tmp: Path) -> list[str]:
    x = _binary_items()
    x[7, 3, 5] = np.nan
    np.save(tmp / "with_nan.npy", x)
    return [str(tmp / "with_nan.npy")]


def _non_binary_for_bernoulli(tmp: Path) -> list[str]:
    x = _binary_items()
    x[3, 0, 2] = 0.5
    np.save(tmp / "grey.npy", x)
    return [str(tmp / "grey.npy"), "--likelihood", "bernoulli"]


def _shapes_with(*extra: str):
    return lambda tmp: ["shapes", *SMALL, *extra]


@pytest.mark.parametrize("make_args, patterns", [
    (_unknown_dataset, [r"'no_such_dataset'", r"\bshapes\b", r"\bnumpy\b"]),
    (_unclaimed_path, [r"no .*loader.* read", r"notes\.npy"]),
    (_nan_npy, [r"\brow 7\b", r"nan"]),
    (_non_binary_for_bernoulli, [r"\bitem 3\b", r"\bgaussian\b"]),
    (_shapes_with("--beta", "0"), [r"\bbeta\b", r"> ?0"]),
    (_shapes_with("--beta", "-1"), [r"\bbeta\b", r"> ?0", r"-1"]),
    (_shapes_with("--epochs", "-1"), [r"\bepochs\b", r"-1"]),
], ids=["unknown-dataset", "unclaimed-path", "nan", "non-binary-bernoulli", "beta-0",
        "beta-negative", "epochs-negative"])
def test_bad_input_fails_with_one_line_and_no_run(tmp_path: Path, make_args, patterns) -> None:
    out = tmp_path / "run"
    args = make_args(tmp_path)
    if "--epochs" not in args:
        args += ["--epochs", "1"]
    assert_clean_failure(invoke("train", *args, "--latent-dim", 2, "--out", out, "--quiet"),
                         *patterns)
    assert not out.exists()


# --- numpy loader, claimed by content ----------------------------------------------------
def test_npz_with_factors_trains_through_the_numpy_loader(tmp_path: Path, shapes_data) -> None:
    path = tmp_path / "data.bin"  # an extension no loader knows: claimed by its content
    with path.open("wb") as fh:
        np.savez(fh, x=shapes_data.x.numpy()[:200], factors=shapes_data.factors[:200, :3])
    out = tmp_path / "run"
    ok(invoke("train", path, "--epochs", 2, "--latent-dim", 2, "--arch-option", "hidden=32,16",
              "--out", out, "--quiet"))
    config = json.loads((out / "config.json").read_text())
    assert config["source"]["kind"] == "file"
    assert config["source"]["loader"] == "numpy"
    assert Path(config["source"]["path"]) == path.resolve()
    assert config["data"]["n_items"] == 200
    assert config["data"]["event_shape"] == [16, 16]
    assert config["data"]["likelihood"] == "bernoulli"  # binary data, chosen automatically
    assert config["data"]["factors"] == ["factor_0", "factor_1", "factor_2"]
    assert (out / "model.safetensors").is_file()
    _, rows = read_csv(out / "history.csv")
    assert len(rows) == 2
