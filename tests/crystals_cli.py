"""What the crystals CLI tests share: tiny training flags, a CLI call that must succeed,
and a toy-perovskite run trained through the CLI."""

from __future__ import annotations

from pathlib import Path

TINY = ["--latent-dim", "8", "--arch-option", "hidden=64", "--beta", "0.05", "--epochs", "40",
        "--lr", "3e-3", "--batch-size", "32", "--quiet", "--threads", "1"]


def invoke(*args):
    """Run `betavae ARGS...` in-process; fail the test with the output unless it succeeds."""
    from click.testing import CliRunner

    from betavae_core.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def train_toy_run(folder: Path) -> Path:
    """A run trained on two copies of the toy perovskites, in folder/run."""
    import betavae_core

    betavae_core.reset_plugins()
    run = folder / "run"
    invoke("train", "toy_perovskites", "-o", "copies=2", "--out", run, *TINY)
    return run
