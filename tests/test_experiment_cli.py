"""`betavae experiment`, added by the science plugin through `register_commands`, and the
plugin's cheap start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner, Result

from betavae_core.cli import main
from betavae_science.experiments import EXPERIMENTS, ExperimentResult
from betavae_science.experiments import collapse as collapse_module

HEAVY = ("torch", "numpy", "matplotlib", "sklearn", "scipy", "threadpoolctl")


@pytest.fixture(autouse=True)
def science_only(fresh_plugins, monkeypatch):
    """Only the science plugin (beside the core) loads."""
    monkeypatch.setenv("BETAVAE_LOAD_PLUGINS", "science")


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_experiment_help_lists_every_experiment() -> None:
    result = invoke("experiment", "--help")
    assert result.exit_code == 0, result.output
    assert "experiment [OPTIONS] NAME" in result.output
    for option in ("--out", "--overwrite", "--quick", "--seed"):
        assert option in result.output
    listed = result.output.split("Experiments:")[1].splitlines()
    for experiment in EXPERIMENTS.values():
        assert any(line.split() == [experiment.name, *experiment.help.split()]
                   for line in listed), experiment.name
    top = invoke("--help")
    assert top.exit_code == 0 and "experiment" in top.output
    assert "Run an experiment on β as the price of information." in top.output


def test_plugins_json_shows_the_science_plugin_and_its_hooks() -> None:
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.stdout)}
    assert set(listed) == {"betavae_core", "science"}
    science = listed["science"]
    assert science["status"] == "ok" and science["reason"] is None
    assert science["module"] == "betavae_science.plugin"
    assert science["hooks"] == ["register_architectures", "register_commands",
                                "register_evaluations"]
    assert science["registers"] == {"architectures": ["ivae_mlp"],
                                    "evaluations": ["disentanglement"]}
    assert "disentanglement" not in listed["betavae_core"]["registers"]["evaluations"]


def test_unknown_experiment_is_one_line_and_writes_nothing(tmp_path) -> None:
    out = tmp_path / "out"
    result = invoke("experiment", "nosuch", "--out", out)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no experiment named 'nosuch'" in lines[0]
    assert all(name in lines[0] for name in EXPERIMENTS)
    assert not out.exists()


def test_experiment_command_runs_and_writes_its_result(tmp_path, monkeypatch) -> None:
    """The command resolves the experiment, passes --quick and --seed and writes
    result.json; the experiment itself is swapped for a canned result (no fitting)."""
    calls = []

    def canned(quick: bool, seed: int) -> ExperimentResult:
        calls.append((quick, seed))
        return ExperimentResult("collapse", {"config": {"seed": seed}},
                                {"skip_collapses": True, "capacity_restores": False})

    monkeypatch.setattr(collapse_module, "collapse", canned)
    monkeypatch.setattr(collapse_module, "table",
                        lambda r: f"canned table, seed {r.metrics['config']['seed']}")
    out = tmp_path / "out"
    result = invoke("experiment", "collapse", "--quick", "--seed", 3, "--out", out)
    assert result.exit_code == 0, result.output
    assert calls == [(True, 3)]
    assert "canned table, seed 3" in result.output  # the table is printed ...
    assert "collapse: 1/2 checks hold" in result.output
    doc = json.loads((out / "result.json").read_text())
    assert doc["experiment"] == "collapse" and doc["metrics"] == {"config": {"seed": 3}}
    assert doc["checks"] == {"skip_collapses": True, "capacity_restores": False}
    assert doc["table"] == ["canned table, seed 3"]  # ... and kept in result.json

    # The run-folder rules: a non-empty folder is refused before anything runs ...
    again = invoke("experiment", "collapse", "--quick", "--out", out)
    assert again.exit_code == 1 and isinstance(again.exception, SystemExit)
    assert len(again.output.strip().splitlines()) == 1 and "is not empty" in again.output
    assert calls == [(True, 3)]
    # ... a user's own file there is never replaced, even with --overwrite ...
    (out / "notes.txt").write_text("mine")
    kept = invoke("experiment", "collapse", "--quick", "--overwrite", "--out", out)
    assert kept.exit_code == 1 and "notes.txt" in kept.output
    assert (out / "notes.txt").read_text() == "mine" and calls == [(True, 3)]
    # ... and --overwrite replaces what betavae wrote.
    (out / "notes.txt").unlink()
    replaced = invoke("experiment", "collapse", "--quick", "--seed", 4, "--overwrite",
                      "--out", out)
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((out / "result.json").read_text())["metrics"] == {"config": {"seed": 4}}
    assert calls == [(True, 3), (True, 4)]


def test_plugin_and_command_import_nothing_heavy() -> None:
    """Loading the plugin and building the command (as `betavae --help` does) imports
    neither torch, numpy, matplotlib nor scikit-learn."""
    code = ("import sys, click, betavae_science.plugin as p\n"
            "group = click.Group()\n"
            "p.register_commands(cli=group)\n"
            "assert 'experiment' in group.commands\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
