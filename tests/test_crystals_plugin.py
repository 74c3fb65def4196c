"""Crystals plugin records: a cheap entry point, declared options that match what the
callables take (an unknown one is a ConfigError listing the valid ones), and the training
defaults crystals suggest, down to config.json."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

import betavae_core as bv
from betavae_core.cli import main
from betavae_crystals import from_structures
from betavae_crystals.architecture import DEFAULT_HIDDEN

pytestmark = pytest.mark.usefixtures("fresh_plugins")

HEAVY = ("torch", "numpy", "matplotlib", "pymatgen", "ase", "sklearn", "smact", "matminer")
CRYSTAL_DEFAULTS = {"beta": 0.05, "latent_dim": 16, "epochs": 200, "patience": 0}


def structures() -> list[Structure]:
    return [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
            for a in (4.0, 4.1, 4.2, 4.3)]


def crystal_records() -> list:
    return [r for kind in ("datasets", "loaders", "likelihoods", "architectures",
                           "evaluations", "generators")
            for r in bv.registry(kind) if r.plugin == "crystals"]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_plugin_import_pulls_in_no_heavy_module():
    shown = _run("import sys, betavae_crystals.plugin, betavae_crystals\n"
                 f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "[]"


def test_a_missing_extra_leaves_the_plugin_unavailable_with_the_install_command():
    shown = _run("import sys; sys.modules['smact'] = None\n"
                 "import betavae_core as bv\n"
                 "info = {p.name: p for p in bv.plugin_infos()}['crystals']\n"
                 "print(info.status, '|', info.reason)")
    assert shown.returncode == 0, shown.stderr
    status, reason = shown.stdout.strip().split(" | ", 1)
    assert status != "ok" and "smact" in reason and "pip install 'betavae[crystals]'" in reason


def test_every_record_declares_exactly_the_options_its_callable_takes():
    records = crystal_records()
    assert {type(r).__name__ for r in records} == {"Dataset", "Loader", "LikelihoodSpec",
                                                   "Architecture", "Evaluation", "Generator"}
    for record in records:
        if isinstance(record, bv.Architecture):  # reads request.options["hidden"]
            assert record.options == {"hidden": DEFAULT_HIDDEN}
            continue
        func = getattr(record, "load", None) or getattr(record, "build", None) or \
            getattr(record, "evaluate", None) or record.generate
        params = list(inspect.signature(func.resolve()).parameters.values())
        skip = {bv.Dataset: 0, bv.Loader: 1, bv.LikelihoodSpec: 1, bv.Evaluation: 1,
                bv.Generator: 2}[type(record)]
        taken = {p.name: p.default for p in params[skip:]}
        assert taken == record.options, record.name


def test_unknown_architecture_and_likelihood_options_are_config_errors(tmp_path):
    data = from_structures(structures())
    for settings, message in (
        ({"architecture_options": {"width": 3}},
         r"architecture 'crystal_mlp' has no option\(s\) \['width'\]; its options are: "
         r"hidden \(default \[512, 256\]\)"),
        ({"likelihood_options": {"kappa": 3}},
         r"likelihood 'crystal' has no option\(s\) \['kappa'\]; its options are: "
         r"max_concentration .*property_hidden"),
    ):
        model, train, objective, _ = bv.configs_for(data, {**settings, "epochs": 1,
                                                           "progress": False})
        with pytest.raises(bv.ConfigError, match=message):
            bv.fit(data, model, train, objective)


def test_crystal_data_suggests_the_crystals_training_settings(tmp_path):
    (tmp_path / "t.csv").write_text(
        "material_id,cif\n" + "".join(f'm{i},"{CifWriter(s)}"\n'
                                      for i, s in enumerate(structures())))
    toy, _ = bv.load_data("toy_perovskites", options={"copies": 1})
    table, _ = bv.load_data(str(tmp_path / "t.csv"))
    for data in (toy, table, from_structures(structures())):
        model, train, objective, from_domain = bv.configs_for(data, {})
        assert (objective.beta, model.latent_dim, train.epochs, train.patience) == \
            (0.05, 16, 200, None)
        assert from_domain == CRYSTAL_DEFAULTS
        model, train, objective, from_domain = bv.configs_for(data, {"beta": 0.5})
        assert objective.beta == 0.5 and "beta" not in from_domain
    listed = {r.name: r.defaults for r in crystal_records() if hasattr(r, "defaults")}
    assert listed == dict.fromkeys(["toy_perovskites", "crystal_structures", "crystal_csv",
                                    "crystal_ase_db"], CRYSTAL_DEFAULTS)


def test_cli_train_takes_and_records_the_domain_defaults(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "toy_perovskites", "-o", "copies=1",
                                       "--epochs", "1", "--arch-option", "hidden=16",
                                       "--out", str(out), "--quiet", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "from the crystals domain's defaults: beta=0.05, latent_dim=16, patience=0" in \
        result.output
    config = json.loads((out / "config.json").read_text())
    assert config["from_domain"] == {"beta": 0.05, "latent_dim": 16, "patience": 0}
    assert config["model"]["latent_dim"] == 16 and config["train"]["epochs"] == 1
    assert config["train"]["patience"] is None and config["objective"]["beta"] == 0.05
