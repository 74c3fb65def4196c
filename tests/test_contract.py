"""Plugin contract v2: the declared API, cheap start-up, declared options, domain
defaults, the run context handed to evaluations and generators, plugin subcommands."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import betavae_core
from betavae_core import (
    ConfigError,
    PluginError,
    configs_for,
    evaluate,
    evaluate_run,
    generate,
    get_host,
    lazy,
    load_data,
    load_run,
    plugin_infos,
)
from betavae_core.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n": 400, "size": 16}

pytestmark = pytest.mark.usefixtures("fresh_plugins")


# --- the declared API -------------------------------------------------------------------
def _core_imports(path: Path) -> list[tuple[int, str]]:
    """(line, what) for every import of betavae_core in `path` that is not a top-level
    name of the declared API."""
    exported = set(betavae_core.__all__)
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("betavae_core."):
                bad.append((node.lineno, f"from {node.module} import ..."))
            elif node.module == "betavae_core":
                bad += [(node.lineno, f"from betavae_core import {a.name}")
                        for a in node.names if a.name not in exported]
        elif isinstance(node, ast.Import):
            bad += [(node.lineno, f"import {a.name}") for a in node.names
                    if a.name.startswith("betavae_core.")]
    return bad


def test_plugins_and_examples_import_only_the_declared_api() -> None:
    files = sorted((ROOT / "plugins").rglob("*.py")) + sorted((ROOT / "examples").rglob("*.py"))
    assert len(files) > 20
    offences = [f"{f.relative_to(ROOT)}:{line}: {what}"
                for f in files for line, what in _core_imports(f)]
    assert offences == []


def test_the_api_scan_catches_a_deep_import(tmp_path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from betavae_core.posterior import encode\nimport betavae_core.plots\n"
                   "from betavae_core import encode, not_exported_name\n")
    assert [line for line, _ in _core_imports(bad)] == [1, 2, 3]


def test_every_declared_name_resolves_and_none_shadows_a_submodule() -> None:
    assert set(betavae_core._LAZY) | set(betavae_core._MODULES) <= set(betavae_core.__all__)
    modules = {p.stem for p in (ROOT / "betavae_core").glob("*.py")}
    for name in betavae_core.__all__:
        value = getattr(betavae_core, name)
        if name in ("information", "plots"):
            assert value.__name__ == f"betavae_core.{name}"
        else:
            # `registry` and `lazy` are bound eagerly, after their submodules are imported
            assert name not in modules or name in ("lazy", "registry"), name
            assert not isinstance(value, type(sys)), name


def test_every_package_folder_is_listed_in_pyproject() -> None:
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for package, folder in tool["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *rel)))
    assert found == set(tool["packages"])


def test_readme_lists_every_declared_name() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Writing a plugin"):]
    missing = [n for n in betavae_core.__all__ if f"`{n}`" not in section]
    assert missing == []


# --- start-up does no work --------------------------------------------------------------
HEAVY = ("torch", "matplotlib", "numpy", "scanpy", "anndata", "pymatgen", "ase", "sklearn")


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["plugins"], ["datasets"]])
def test_listing_commands_import_nothing_heavy(args) -> None:
    code = ("import sys\nfrom betavae_core.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"


# --- lazy callables and missing extras ---------------------------------------------------
def test_lazy_imports_on_first_call_and_binds_keywords() -> None:
    indent = lazy("textwrap:indent", prefix="> ")
    assert "textwrap:indent" in repr(indent)
    assert indent("a") == "> a"
    assert indent("a", prefix="# ") == "# a"
    with pytest.raises(PluginError, match="package.module:function"):
        lazy("no_colon_here")


MISSING_EXTRA = """
from betavae_core import requires
requires("betavae_test_missing_module_x", "json", extra="imaginary")
"""


def test_a_missing_extra_is_unavailable_with_the_pip_command(make_module, entry_points,
                                                               recwarn) -> None:
    entry_points({"imaginary": make_module(MISSING_EXTRA)})
    get_host()
    assert not [w for w in recwarn if "imaginary" in str(w.message)]  # a choice, not a fault
    info = {i.name: i for i in plugin_infos()}["imaginary"]
    assert info.status == "unavailable"
    assert "betavae_test_missing_module_x" in info.reason and "json" not in info.reason
    assert "pip install 'betavae[imaginary]'" in info.reason


# --- options are declared and checked ----------------------------------------------------
def test_unknown_loader_option_is_a_config_error_listing_the_valid_ones(tmp_path) -> None:
    path = tmp_path / "x.npy"
    import numpy as np

    np.save(path, np.zeros((4, 3), dtype="float32"))
    with pytest.raises(ConfigError, match=r"loader 'numpy' has no option\(s\) \['colour'\].*"
                                          r"likelihood \(default 'auto'\)"):
        load_data(path, options={"colour": "red"})


def test_unknown_likelihood_or_architecture_option_is_a_config_error(shapes_data) -> None:
    with pytest.raises(ConfigError, match="likelihood 'bernoulli' has no option.*none"):
        betavae_core.BetaVAE(betavae_core.ModelConfig.for_data(
            shapes_data, likelihood_options={"scale": 0.1}))
    with pytest.raises(ConfigError, match=r"architecture 'mlp'.*\['width'\].*hidden"):
        betavae_core.BetaVAE(betavae_core.ModelConfig.for_data(
            shapes_data, architecture_options={"width": 3}))


def test_evaluation_options_are_passed_and_checked(tiny_run, shapes_data) -> None:
    model = load_run(tiny_run).model
    strict = evaluate(model, shapes_data, names=["posterior"],
                      options={"posterior": {"threshold": 1e6}})
    loose = evaluate(model, shapes_data, names=["posterior"],
                     options={"posterior": {"threshold": 0.0}})
    assert strict["posterior"]["active_units"] == 0 < loose["posterior"]["active_units"]
    with pytest.raises(ConfigError, match=r"evaluation 'posterior'.*\['cutoff'\].*threshold"):
        evaluate(model, shapes_data, names=["posterior"], options={"posterior": {"cutoff": 1}})
    with pytest.raises(ConfigError, match="images.*do not run here"):
        evaluate(model, shapes_data, names=["posterior"], options={"images": {"n_show": 2}})


def test_cli_eval_option(tiny_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ok = CliRunner().invoke(main, ["evaluate", str(run), "--only", "posterior",
                                   "-e", "posterior.threshold=1000000"])
    assert ok.exit_code == 0, ok.output
    report = json.loads((run / "report.json").read_text())
    assert report["evaluation"]["results"]["posterior"]["active_units"] == 0
    bad = CliRunner().invoke(main, ["evaluate", str(run), "-e", "posterior=3"])
    assert bad.exit_code == 1 and "NAME.KEY=VALUE" in bad.output


def test_unknown_generator_option_is_refused_before_anything_is_written(tiny_run,
                                                                       tmp_path) -> None:
    out = tmp_path / "cands"
    with pytest.raises(ConfigError, match=r"generator 'arrays' has no option\(s\) \['k'\]"):
        generate(load_run(tiny_run).model, 4, out, options={"k": 1})
    assert not out.exists()


# --- domain defaults ---------------------------------------------------------------------
SUGGESTING = """
import numpy as np
from betavae_core import Dataset, DomainData, hookimpl


def load(n=64, data_dependent=False):
    extra = {"epochs": 3} if data_dependent else {}
    return DomainData(x=np.random.default_rng(0).normal(size=(int(n), 5)).astype("float32"),
                      domain="suggest", defaults=extra)


@hookimpl
def register_datasets(register):
    register(Dataset(name="suggesting", domain="suggest", help="", load=load,
                     options={"n": 64, "data_dependent": False},
                     defaults={"beta": 0.25, "latent_dim": 3, "epochs": 2, "patience": 0}))
"""


def test_domain_defaults_fill_what_the_user_did_not_set(make_module, entry_points) -> None:
    entry_points({"suggest": make_module(SUGGESTING)})
    data, _ = load_data("suggesting")
    model, train, objective, from_domain = configs_for(data, {"latent_dim": 5, "beta": None})
    assert (model.latent_dim, objective.beta, train.epochs, train.patience) == (5, 0.25, 2, None)
    assert from_domain == {"beta": 0.25, "epochs": 2, "patience": 0}
    data, _ = load_data("suggesting", options={"data_dependent": True})
    assert configs_for(data)[1].epochs == 3  # the data's own suggestion beats the record's
    with pytest.raises(ConfigError, match="unknown training setting"):
        configs_for(data, {"betta": 2})


def test_a_suggested_warmup_keeps_its_share_of_the_epochs_the_user_sets(shapes_data) -> None:
    shapes_data.defaults = {"epochs": 400, "warmup_epochs": 100.0, "schedule": "warmup"}
    _, train, objective, from_domain = configs_for(shapes_data, {"epochs": 8})
    assert (train.epochs, objective.warmup_epochs, from_domain["warmup_epochs"]) == (8, 2.0, 2.0)
    assert configs_for(shapes_data, {"epochs": 8, "warmup_epochs": 5})[2].warmup_epochs == 5


def test_a_user_chosen_beta_takes_the_warmup_the_domain_suggests_for_it(shapes_data) -> None:
    """A domain warming up to its own β over the whole fit suggests a shorter warm-up for a β
    the user sets (single-cell: a quarter), kept as a share when the user sets epochs too."""
    shapes_data.defaults = {"beta": 0.25, "epochs": 400, "warmup_epochs": 400.0,
                            "warmup_epochs_given_beta": 100.0, "schedule": "warmup"}
    own = configs_for(shapes_data)
    assert own[2].warmup_epochs == 400.0 and "warmup_epochs_given_beta" not in own[3]
    chosen = configs_for(shapes_data, {"beta": 1.0})
    assert (chosen[2].beta, chosen[2].warmup_epochs, chosen[3]["warmup_epochs"]) == (
        1.0, 100.0, 100.0)
    assert configs_for(shapes_data, {"beta": 1.0, "epochs": 8})[2].warmup_epochs == 2.0
    assert configs_for(shapes_data, {"beta": 1.0, "warmup_epochs": 7})[2].warmup_epochs == 7


def test_option_dicts_merge_the_users_keys_over_the_domains(shapes_data) -> None:
    shapes_data.defaults = {"architecture_options": {"hidden": [32], "depth": 2},
                            "latent_dim": 4}
    model, _, _, from_domain = configs_for(shapes_data, {"architecture_options": {"hidden": [8]}})
    assert model.architecture_options == {"hidden": [8], "depth": 2}
    assert from_domain == {"latent_dim": 4, "architecture_options": {"depth": 2}}


def test_cli_prints_and_records_the_domain_defaults(make_module, entry_points,
                                                    tmp_path) -> None:
    entry_points({"suggest": make_module(SUGGESTING)})
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "suggesting", "--epochs", "1", "--quiet",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "from the suggest domain's defaults: beta=0.25, latent_dim=3, patience=0" \
        in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["from_domain"] == {"beta": 0.25, "latent_dim": 3, "patience": 0}
    assert config["train"]["epochs"] == 1 and config["objective"]["beta"] == 0.25


def test_a_record_suggesting_an_unknown_setting_is_refused(make_module, entry_points) -> None:
    entry_points({"typo": make_module(SUGGESTING.replace('"beta": 0.25', '"betta": 0.25'))})
    with pytest.warns(UserWarning, match="unknown training defaults"):
        get_host()


def test_python_fit_without_configs_uses_the_domain_defaults(make_module, entry_points,
                                                             tmp_path) -> None:
    entry_points({"suggest": make_module(SUGGESTING)})
    data, source = load_data("suggesting")
    result = betavae_core.fit(data, out_dir=tmp_path / "run", source=source,
                              domain_record={"note": "mine"})
    assert result.model.latent_dim == 3 and len(result.history) == 2
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["from_domain"]["latent_dim"] == 3
    assert json.loads((tmp_path / "run" / "domain.json").read_text()) == {"note": "mine"}


# --- the run context ---------------------------------------------------------------------
SEES_THE_RUN = """
from betavae_core import CandidateReport, Evaluation, EvaluationResult, Generator, hookimpl

SEEN = {}


def look(run):
    SEEN["eval"] = (len(run.heldout), None if run.train is None else len(run.train),
                    run.split, run.config.get("source", {}).get("name"))
    return EvaluationResult(metrics={})


def make(run, samples):
    SEEN[samples.n] = (samples.z is None, samples.mean is None, samples.sample is None,
                       run.out_dir.name, run.seed, len(run.train))
    return CandidateReport(objects=None, summary={"n": samples.n})


@hookimpl
def register_evaluations(register):
    register(Evaluation(name="look", domain="*", help="", evaluate=look))


@hookimpl
def register_generators(register):
    register(Generator(name="own_latents", domain="*", help="", generate=make, samples="none"))
    register(Generator(name="own_decoder", domain="*", help="", generate=make,
                       samples="latents"))
"""


def test_evaluations_see_both_splits_of_the_run(make_module, entry_points, tiny_run,
                                                tmp_path) -> None:
    name = make_module(SEES_THE_RUN)
    entry_points({"seer": name})
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    evaluate_run(run, names=["look"])
    n_items = json.loads((run / "config.json").read_text())["data"]["n_items"]
    n_val, n_train, split, source = sys.modules[name].SEEN["eval"]
    assert n_val + n_train == n_items and 0 < n_val < n_train
    assert (split, source) == ("validation", "shapes")


def test_generators_get_only_what_their_record_asks_for(make_module, entry_points,
                                                        tiny_run, tmp_path) -> None:
    name = make_module(SEES_THE_RUN)
    entry_points({"seer": name})
    run = load_run(tiny_run)
    calls = []
    run.model.decoder.register_forward_hook(lambda *args: calls.append(1))
    generate(run.context(seed=7, lazy=True), 5, tmp_path / "a", generator="own_latents",
             seed=7)
    generate(run.context(seed=7, lazy=True), 6, tmp_path / "b", generator="own_decoder",
             seed=7)
    seen = sys.modules[name].SEEN
    assert seen[5] == (True, True, True, "a", 7, 360)
    assert seen[6] == (False, True, True, "b", 7, 360)
    assert calls == []  # the core decoded nothing a generator would throw away
    generate(run.model, 3, tmp_path / "c")
    assert calls  # the default generator gets decoded samples


def test_a_run_folder_written_before_v2_still_evaluates_and_generates(tiny_run,
                                                                      tmp_path) -> None:
    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config.pop("from_domain")
    (run / "config.json").write_text(json.dumps(config))
    assert "rate_distortion" in evaluate_run(run)["results"]
    result = CliRunner().invoke(main, ["generate", str(run), "-n", "4", "--out",
                                       str(tmp_path / "cands")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cands" / "samples.npy").is_file()


def test_decode_and_reconstruct_are_batched_seeded_and_leave_global_rng_alone(
        tiny_run, shapes_data) -> None:
    model = load_run(tiny_run).model
    z = torch.randn(37, model.latent_dim)
    state = torch.random.get_rng_state()
    a = betavae_core.decode(model, z, params=True, seed=3, batch_size=8)
    b = betavae_core.decode(model, z, params=True, seed=3, batch_size=100)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.allclose(a.mean, b.mean) and a.params.shape[0] == 37
    assert torch.equal(a.sample, betavae_core.decode(model, z, seed=3, batch_size=8).sample)
    rec = betavae_core.reconstruct(model, shapes_data.subset(range(20)), batch_size=7)
    assert rec.mean.shape == (20, *shapes_data.event_shape) and rec.sample is None


def test_logvar_is_clamped_once_in_the_model(tiny_run) -> None:
    model = load_run(tiny_run).model
    x = torch.full((2, *model.config.event_shape), 1e6)
    enc = model.encode(x)
    assert enc.logvar.min() >= -12.0 and enc.logvar.max() <= 8.0


# --- plugin subcommands ------------------------------------------------------------------
ADDS_COMMANDS = """
import click
from betavae_core import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command(name="{name}", short_help="a plugin's own command")
    def hello():
        click.echo("hello from a plugin")
"""


def test_a_plugin_adds_a_subcommand(make_module, entry_points) -> None:
    entry_points({"greeter": make_module(ADDS_COMMANDS.format(name="hello"))})
    listing = CliRunner().invoke(main, ["--help"])
    assert "hello" in listing.output and "a plugin's own command" in listing.output
    assert CliRunner().invoke(main, ["hello"]).output.strip() == "hello from a plugin"
    info = {i.name: i for i in plugin_infos()}["greeter"]
    assert info.hooks == ["register_commands"]


def test_a_plugin_command_cannot_replace_a_core_one(make_module, entry_points) -> None:
    entry_points({"hijack": make_module(ADDS_COMMANDS.format(name="train"))})
    with pytest.warns(UserWarning, match="hijack"):
        CliRunner().invoke(main, ["--help"])
    result = CliRunner().invoke(main, ["train", "--help"])
    assert "Fit a β-VAE" in result.output
    info = {i.name: i for i in plugin_infos()}["hijack"]
    assert info.status == "unavailable" and "'train'" in info.reason


def test_evaluating_new_data_applies_the_fits_checks(tiny_run, shapes_data) -> None:
    model = load_run(tiny_run).model
    halves = shapes_data.subset(range(8))
    halves.x = halves.x * 0.5  # not binary: outside the Bernoulli likelihood's support
    with pytest.raises(betavae_core.DataError, match="item 0"):
        evaluate(model, halves, names=["rate_distortion"])
