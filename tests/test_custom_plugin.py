"""The example plugin in examples/custom_plugin, installed for real and driven through the
`betavae` command line, plus direct tests of its FASTA reader and likelihood.

The package is installed with pip into a temporary folder (never into the running
environment) and found through PYTHONPATH, so the entry-point discovery a user relies on
is what is tested.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from betavae_core import DataError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_plugin"
EXAMPLE_SRC = EXAMPLE / "src"
TIMEOUT = 300


def _betavae_command() -> list[str]:
    """The `betavae` script beside this interpreter, else the module form."""
    script = Path(sys.executable).parent / "betavae"
    return [str(script)] if script.exists() else [sys.executable, "-m", "betavae_core.cli"]


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment in which `betavae` finds the example plugin, pip-installed into a
    temporary target. The source is copied first so the build leaves the repo clean."""
    if importlib.util.find_spec("pip") is None or importlib.util.find_spec("setuptools") is None:
        pytest.skip("installing the example needs pip and setuptools in this interpreter")
    root = tmp_path_factory.mktemp("dna_plugin")
    source = root / "betavae_dna_src"
    shutil.copytree(EXAMPLE, source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(target),
         str(source)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    if proc.returncode != 0:
        pytest.skip(f"pip could not build the example here: {proc.stderr.strip()[-500:]}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), env.get("PYTHONPATH")) if p)
    env.pop("BETAVAE_LOAD_PLUGINS", None)
    return env


def _betavae(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*_betavae_command(), *args], env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, (
        f"betavae {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


@pytest.fixture(scope="module")
def run_dir(plugin_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short fit on the motifs set (small batches and a higher rate, so three epochs
    learn enough to beat chance)."""
    out = tmp_path_factory.mktemp("dna_run") / "run"
    _betavae(plugin_env, "train", "motifs", "-o", "n=600", "--epochs", "3", "--latent-dim",
             "4", "--batch-size", "32", "--lr", "3e-3", "--out", str(out), "--quiet")
    return out


def test_plugins_lists_dna(plugin_env: dict[str, str]) -> None:
    infos = json.loads(_betavae(plugin_env, "plugins", "--json").stdout)
    dna = {i["name"]: i for i in infos}.get("dna")
    assert dna is not None, f"dna not among {[i['name'] for i in infos]}"
    assert dna["status"] == "ok", dna["reason"]
    assert dna["version"] == "0.1.0"
    assert dna["module"] == "betavae_dna.plugin"
    assert dna["registers"] == {
        "datasets": ["motifs"],
        "loaders": ["fasta"],
        "likelihoods": ["categorical"],
        "evaluations": ["dna_reconstruction"],
    }


def test_train_writes_run(run_dir: Path) -> None:
    for name in ("config.json", "model.safetensors", "history.csv"):
        assert (run_dir / name).is_file(), name
    with (run_dir / "history.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 3
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["likelihood"] == "categorical"
    assert config["data"]["domain"] == "dna"
    assert config["data"]["event_shape"] == [40, 4]


def test_evaluate_reports_dna_reconstruction(plugin_env: dict[str, str], run_dir: Path) -> None:
    _betavae(plugin_env, "evaluate", str(run_dir))
    report = json.loads((run_dir / "report.json").read_text())
    results = report["evaluation"]["results"]
    assert "rate_distortion" in results
    dna = results["dna_reconstruction"]
    assert dna["plugin"] == "dna"
    assert dna["n_items"] == 60
    assert len(dna["accuracy_per_position"]) == 40
    assert dna["base_accuracy"] > dna["chance_accuracy"] == 0.25
    assert 0.0 <= dna["gc_abs_correlation"] <= 1.0
    assert (run_dir / "plots" / "dna_reconstruction_accuracy.png").is_file()


# --- direct tests of the package's modules (imported from the example's source) --------
@pytest.fixture
def dna(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    return importlib.import_module("betavae_dna.loaders")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_fasta_round_trip(dna: ModuleType, tmp_path: Path) -> None:
    from betavae_dna.sequences import looks_like_fasta, to_strings

    seqs = {"s1": "ACGTACGTAC", "s2": "TTTTGGGGCC", "s3": "GATTACAGAT"}
    text = "\n; a comment\n" + "".join(
        f">{name} description\n{seq[:6]}\n{seq[6:].lower()}\n\n" for name, seq in seqs.items())
    path = _write(tmp_path / "seqs.txt", text)
    assert looks_like_fasta(path)
    data = dna.load_fasta(path)
    assert data.x.shape == (3, 10, 4)
    assert data.domain == "dna" and data.likelihood == "categorical"
    assert data.generator == "arrays"
    assert torch.all(data.x.sum(dim=-1) == 1)
    assert to_strings(data.x.numpy()) == list(seqs.values())
    assert list(data.metadata["name"]) == list(seqs)


def test_fasta_claims_by_content(dna: ModuleType, tmp_path: Path) -> None:
    from betavae_dna.sequences import looks_like_fasta

    assert not looks_like_fasta(_write(tmp_path / "a.fasta", "ACGT\n>x\nACGT\n"))
    assert not looks_like_fasta(_write(tmp_path / "empty.fa", "\n\n"))
    assert not looks_like_fasta(tmp_path / "missing.fa")
    assert not looks_like_fasta(tmp_path)
    (tmp_path / "bin.fa").write_bytes(b"\x93NUMPY\x00\xff")
    assert not looks_like_fasta(tmp_path / "bin.fa")


@pytest.mark.parametrize("text, expected", [
    (">a\nACGT\n>b x\nACNT\n", ["bad.fa", "'b'", "'N'", "position 3"]),
    (">a\nACGT\n>b\nACGTA\n", ["bad.fa", "'b'", "length 5", "'a'", "length 4"]),
    (">a\nACGT\n>b\n\n>c\nACGT\n", ["bad.fa", "'b'", "no sequence"]),
    ("ACGT\n>a\nACGT\n", ["bad.fa", "line 1"]),
])
def test_fasta_bad_input(dna: ModuleType, tmp_path: Path, text: str,
                         expected: list[str]) -> None:
    path = _write(tmp_path / "bad.fa", text)
    with pytest.raises(DataError) as err:
        dna.load_fasta(path)
    for part in expected:
        assert part in str(err.value)


def test_motifs_ground_truth_and_determinism(dna: ModuleType) -> None:
    from betavae_dna.sequences import MOTIF, to_strings

    a, b = dna.load_motifs(n=200, length=30, seed=5), dna.load_motifs(n=200, length=30, seed=5)
    assert torch.equal(a.x, b.x) and np.array_equal(a.factors, b.factors)
    assert not torch.equal(a.x, dna.load_motifs(n=200, length=30, seed=6).x)
    assert a.factor_names == ("motif_position", "gc_fraction", "motif_present")
    strings = to_strings(a.x.numpy())
    for seq, (pos, gc, present) in zip(strings, a.factors, strict=True):
        if present:
            assert seq[int(pos):int(pos) + len(MOTIF)] == MOTIF
        else:
            assert pos == -1
        assert gc == pytest.approx(sum(c in "GC" for c in seq) / len(seq))
    assert 0.3 < a.factors[:, 2].mean() < 0.7
    assert a.factors[:, 1].std() > 0.1


def test_categorical_likelihood(dna: ModuleType) -> None:
    from betavae_dna.likelihood import OneHotCategorical

    lik = OneHotCategorical((5, 4))
    x = dna.load_motifs(n=8, length=8, seed=0).x[:, :5]
    lik.check_data(x)
    dist = lik.distribution(torch.zeros(8, 1, 5, 4))
    assert dist.log_prob(x).shape == (8,)
    assert torch.allclose(dist.log_prob(x), torch.full((8,), 5 * np.log(0.25),
                                                       dtype=torch.float32))
    assert dist.mean.shape == (8, 5, 4)
    bad = x.clone()
    bad[2, 3] = torch.tensor([0.0, 0.5, 0.5, 0.0])
    with pytest.raises(DataError, match="item 2 .* position 3"):
        lik.check_data(bad)
