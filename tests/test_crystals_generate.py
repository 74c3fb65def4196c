"""Crystals end to end: train and generate from the command line and from Python, the
report's funnel, relaxation flags, property steering, evaluations (which see the run's
training split and reload nothing), a generator the core hands no decoded samples, and
outputs that are never overwritten. Tiny models on structures built by pymatgen/ase (no
files needed)."""

from __future__ import annotations

import csv
import json
import re

import pytest
import torch
from click.testing import CliRunner
from crystals_cli import invoke, train_toy_run

import betavae_core
import betavae_core as bv
from betavae_core import ModelConfig, Objective, TrainConfig, fit
from betavae_core.cli import main
from betavae_core.errors import ConfigError, OutputExistsError
from betavae_crystals import (
    decode_latents_to_structures,
    encode_structures,
    from_structures,
    generate_candidates,
    generation,
    guidance,
)
from betavae_crystals.datasets import emt_metals, toy_perovskites

pytestmark = pytest.mark.usefixtures("fresh_plugins")
@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return train_toy_run(tmp_path_factory.mktemp("crystals"))


def read_rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_cli_generate_writes_cifs_table_and_funnel(toy_run, tmp_path):
    out = tmp_path / "cands"
    invoke("generate", toy_run, "-n", "300", "--out", out, "-g", "keep=unique")
    report = json.loads((out / "report.json").read_text())
    funnel = report["funnel"]
    assert list(funnel) == ["sampled", "structurally_valid", "compositionally_valid", "unique",
                            "novel"]
    assert funnel["sampled"] == 300 >= funnel["structurally_valid"] >= funnel["unique"]
    assert funnel["structurally_valid"] >= funnel["compositionally_valid"] >= funnel["unique"]
    assert funnel["unique"] >= funnel["novel"] >= 0
    rows = read_rows(out / "candidates.csv")
    assert len(rows) == 300
    assert {"id", "formula", "space_group", "n_sites", "density", "structurally_valid",
            "compositionally_valid", "unique", "novel", "matches_training",
            "nearest_training", "predicted_tolerance_factor", "cif"} <= set(rows[0])
    accepted = [r for r in rows if r["accepted"] == "True"]
    assert len(accepted) == report["accepted"] == funnel["unique"] > 0
    assert all((out / r["cif"]).exists() and r["space_group"] for r in accepted)
    assert {p.name for p in out.glob("*.cif")} == {r["cif"] for r in accepted}
    assert set(report["stages"]) >= {"decode", "structural_validity", "deduplication",
                                     "novelty"}
    cpu = [st["cpu_seconds"] for st in report["stages"].values()]  # the CPU a stage cost
    assert all(isinstance(c, float) for c in cpu) and sum(cpu) > 0  # (10 ms clock ticks)


def test_output_that_holds_candidates_is_never_overwritten(toy_run, tmp_path, snapshot):
    out = tmp_path / "cands"
    invoke("generate", toy_run, "-n", "50", "--out", out)
    before = snapshot(out)
    result = CliRunner().invoke(main, ["generate", str(toy_run), "-n", "50", "--out", str(out)])
    assert result.exit_code == 1 and "already exists and is not empty" in result.output
    assert snapshot(out) == before
    # The generator itself refuses a folder holding candidates, whoever calls it.
    context = betavae_core.load_run(toy_run).context(out_dir=out, lazy=True)
    samples = bv.prepare_samples("none", context, 5, None, None)
    with pytest.raises(OutputExistsError, match="already holds candidates"):
        generation.generate_crystals(context, samples)
    assert snapshot(out) == before


def test_target_steers_the_predicted_property(toy_run, tmp_path):
    invoke("generate", toy_run, "-n", "200", "--out", tmp_path / "low",
           "-g", "target=tolerance_factor=0.85", "-g", "keep=valid", "-g", "training=none")
    invoke("generate", toy_run, "-n", "200", "--out", tmp_path / "high",
           "-g", "target=1.05", "-g", "keep=valid", "-g", "training=none")
    low = json.loads((tmp_path / "low" / "report.json").read_text())["property"]
    high = json.loads((tmp_path / "high" / "report.json").read_text())["property"]
    assert low["target"] == 0.85 and high["target"] == 1.05
    assert low["predicted_mean_all"] < high["predicted_mean_all"]
    result = CliRunner().invoke(main, ["generate", str(toy_run), "-n", "5", "--out",
                                       str(tmp_path / "bad"), "-g", "target=band_gap=2"])
    assert result.exit_code == 1 and "cannot target 'band_gap'" in result.output



@pytest.mark.parametrize("option", ["colour=red", "target_tolerance_factor=1.0", "seed=3",
                                    "n_coverage=5"])
def test_unknown_generator_option_is_a_config_error_listing_the_valid_ones(toy_run, tmp_path,
                                                                          option):
    result = CliRunner().invoke(main, ["generate", str(toy_run), "-n", "5", "--out",
                                       str(tmp_path / "bad"), "-g", option])
    key = option.partition("=")[0]
    assert result.exit_code == 1 and f"no option(s) ['{key}']" in result.output
    assert "relax (default None)" in result.output and "latent (default 'posterior')" in \
        result.output
    assert not isinstance(result.exception, TypeError)


def test_latent_optimisation_moves_predictions_toward_target(toy_run):
    run = betavae_core.load_run(toy_run)
    z = run.model.sample_prior(64, generator=torch.Generator().manual_seed(0))
    attrs = run.attrs
    before = guidance.predict(run.model, run.model.decoder(z, None, None).detach(), attrs)
    moved = guidance.optimise_latents(run.model, z, 1.1, attrs, steps=100)
    after = guidance.predict(run.model, run.model.decoder(moved, None, None).detach(), attrs)
    assert (after - 1.1).abs().mean() < (before - 1.1).abs().mean()


def test_cli_evaluate_reconstruction_and_generation_metrics(toy_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    result = invoke("evaluate", run, "--only", "crystal_reconstruction", "--only",
                    "crystal_generation", "-e", "crystal_generation.n_samples=4")
    assert "crystal_reconstruction" in result.output
    section = json.loads((run / "report.json").read_text())["evaluation"]["results"]
    assert 0 <= section["crystal_reconstruction"]["match_rate"] <= 1
    metrics = section["crystal_generation"]
    assert metrics["n_samples"] == 4
    assert metrics["latent"].startswith("Gaussian mixture")  # fitted to run.train
    for key in ("structural_validity", "compositional_validity", "cov_recall",
                "cov_precision"):
        assert 0 <= metrics[key] <= 1
    if metrics["validity"] > 0:
        assert metrics["wdist_density"] >= 0 and metrics["wdist_num_elements"] >= 0
    result = CliRunner().invoke(main, ["evaluate", str(run), "--only", "crystal_generation",
                                       "-e", "crystal_generation.seed=1"])
    assert result.exit_code == 1 and "no option(s) ['seed']" in result.output
    assert "n_samples (default 1000)" in result.output


def test_generation_evaluation_uses_run_train_and_reloads_nothing(toy_run, monkeypatch):
    loaded = betavae_core.load_run(toy_run)
    context = loaded.context()
    train, heldout = context.train, context.heldout

    def no_reload(*args, **kwargs):
        raise AssertionError("the evaluation reloaded data by name")

    monkeypatch.setattr(bv, "load_data", no_reload)
    monkeypatch.setattr("betavae_core.sources.load_data", no_reload)
    monkeypatch.setattr("betavae_core.sources.reload_source", no_reload)
    options = {"crystal_generation": {"n_samples": 6}}
    seen = bv.evaluate(loaded.model, heldout, names=["crystal_generation"], train=train,
                       options=options)["crystal_generation"]
    assert seen["latent"].startswith("Gaussian mixture")
    unknown = bv.evaluate(loaded.model, heldout, names=["crystal_generation"],
                          options=options)["crystal_generation"]
    assert "no training structures known" in unknown["latent"]


def test_generator_is_handed_no_decoded_samples_and_decodes_each_draw_once(toy_run, tmp_path,
                                                                          monkeypatch):
    record = bv.registry("generators").get("crystals")
    assert record.samples == "none"
    received = []
    real = generation.generate_crystals

    def spy(run, samples, **options):
        received.append(samples)
        return real(run, samples, **options)

    monkeypatch.setattr(generation, "generate_crystals", spy)
    loaded = betavae_core.load_run(toy_run)
    decoded_rows = []
    hook = loaded.model.decoder.register_forward_hook(
        lambda module, args, out: decoded_rows.append(len(out)))
    try:
        report = bv.generate(loaded.context(seed=3, lazy=True), 40, tmp_path / "c", seed=3,
                             options={"latent": "prior", "keep": "valid"})
    finally:
        hook.remove()
    (samples,) = received
    assert samples.n == 40
    assert samples.z is None and samples.mean is None and samples.params is None
    assert sum(decoded_rows) == 40
    assert report.summary["options"]["seed"] == 3
    assert report.summary["novelty_reference"].endswith("of the run's training split")


def test_novelty_against_structures_the_user_names(toy_run, tmp_path):
    from pymatgen.io.cif import CifWriter

    folder = tmp_path / "reference"
    folder.mkdir()
    for structure, name in list(zip(*toy_perovskites()[::2], strict=True))[:5]:
        (folder / f"{name}.cif").write_text(str(CifWriter(structure)))
    out = tmp_path / "cands"
    invoke("generate", toy_run, "-n", "30", "--out", out, "-g", f"training={folder}")
    report = json.loads((out / "report.json").read_text())
    assert report["novelty_reference"] == f"5 structures from {folder}"
    assert report["funnel"]["novel"] is not None
    named = {r["nearest_training"] for r in read_rows(out / "candidates.csv")}
    assert named <= {f"{name}.cif" for name in toy_perovskites()[2][:5]}


def test_a_reference_set_gets_the_fits_checks(toy_run, tmp_path):
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    folder = tmp_path / "reference"
    folder.mkdir()
    for structure, name in list(zip(*toy_perovskites()[::2], strict=True))[:3]:
        (folder / f"{name}.cif").write_text(str(CifWriter(structure)))
    gold = Structure(Lattice.cubic(4.08), ["Au"], [[0, 0, 0]])  # Au: not in the vocabulary
    (folder / "gold.cif").write_text(str(CifWriter(gold)))
    out = tmp_path / "cands"
    named = "gold.cif: Au holds element(s) Au outside the training vocabulary"
    with pytest.warns(UserWarning, match=re.escape(named)):
        invoke("generate", toy_run, "-n", "20", "--out", out, "-g", f"training={folder}")
    note = json.loads((out / "report.json").read_text())["novelty_reference"]
    assert note.startswith(f"3 structures from {folder} (1 skipped, which no candidate can "
                           f"match: {named}")
    rows = ["material_id,cif"] + [f'same,"{CifWriter(s)}"' for s in toy_perovskites()[0][:2]]
    (tmp_path / "ids.csv").write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(main, ["generate", str(toy_run), "-n", "20", "--out",
                                       str(tmp_path / "again"), "-g",
                                       f"training={tmp_path / 'ids.csv'}"])
    assert result.exit_code == 1 and "structure id 'same' repeats" in result.output


def test_encode_structures_names_what_the_model_cannot_take(toy_run):
    from pymatgen.core import Lattice, Structure

    loaded = betavae_core.load_run(toy_run)
    known = toy_perovskites()[0][:2]
    z = encode_structures(loaded.model, known, loaded.attrs, names=["a", "b"])
    assert z.shape == (2, 8)
    with pytest.raises(bv.DataError, match=r"structure id 'a' repeats"):
        encode_structures(loaded.model, known, loaded.attrs, names=["a", "a"])
    gold = Structure(Lattice.cubic(4.08), ["Au"], [[0, 0, 0]])
    with pytest.raises(bv.DataError, match=r"^gold: Au holds element\(s\) Au outside "
                       r"the training vocabulary \(.*, O, F\)\.$"):
        encode_structures(loaded.model, [known[0], gold], loaded.attrs, names=["a", "gold"])
    big = known[0].copy()
    big.make_supercell([2, 2, 2])
    oxygen = next(i for i, site in enumerate(big) if site.specie.symbol == "O")
    big.replace(oxygen, "F")  # one F among the O: the 40-site cell is its primitive cell
    with pytest.raises(bv.DataError, match=r"big: 40 sites in its primitive cell "
                       r"\(Ca8Ti8O23F\); the maximum is 5"):
        encode_structures(loaded.model, [big], loaded.attrs, names=["big"])


def test_generator_without_a_known_training_split_says_novelty_was_not_checked(toy_run,
                                                                               tmp_path):
    loaded = betavae_core.load_run(toy_run)
    bare = bv.RunContext(model=loaded.model, split="none")
    report = bv.generate(bare, 30, tmp_path / "c", generator="crystals", attrs=loaded.attrs)
    summary = report.summary
    assert summary["funnel"]["novel"] is None and summary["rates"]["novelty_of_unique"] is None
    assert "training split is unknown" in summary["novelty_reference"]
    assert "novelty not checked" in summary["accepted_means"]
    assert "no training structures known" in summary["latent"]
    rows = read_rows(tmp_path / "c" / "candidates.csv")
    assert {r["novel"] for r in rows} == {""}


def test_python_api_with_relaxation_that_does_not_converge(tmp_path):
    structures = emt_metals(copies=2)
    data = from_structures(structures)
    fitted = fit(data, ModelConfig.for_data(data, latent_dim=4,
                                            architecture_options={"hidden": [64]}),
                 TrainConfig(epochs=30, lr=3e-3, batch_size=16, progress=False, threads=1),
                 Objective(beta=0.05))
    report = generate_candidates(fitted.model, data, 40, tmp_path / "cands", relax="emt",
                                 relax_steps=1, keep="valid")
    relaxation = report.summary["relaxation"]
    assert relaxation["not_converged"] + relaxation["failed"] == report.summary["accepted"] > 0
    rows = [r for r in read_rows(tmp_path / "cands" / "candidates.csv")
            if r["accepted"] == "True"]
    assert all(r["relax_status"] in ("not_converged", "failed") for r in rows)
    assert all((tmp_path / "cands" / r["cif"]).exists() for r in rows)  # kept, flagged
    assert report.summary["funnel"]["relaxed"] == report.summary["funnel"]["stable"] == 0
    assert all(r["e_above_hull"] != "" and r["e_form_per_atom"] != "" for r in rows
               if r["relax_status"] == "not_converged")  # energies, though not converged
    assert report.summary["stability"]["hull"]["entries"]["element"] > 0
    z = encode_structures(fitted.model, structures[:3], data.attrs)
    assert z.shape == (3, 4)
    assert len(decode_latents_to_structures(fitted.model, z, data.attrs)) == 3


def test_generating_toward_a_target_needs_a_property(tmp_path):
    structures, _, _ = toy_perovskites()
    data = from_structures(structures)
    assert data.attrs["property"] is None
    fitted = fit(data, ModelConfig.for_data(data, latent_dim=2,
                                            architecture_options={"hidden": [16]}),
                 TrainConfig(epochs=1, progress=False), Objective(beta=0.1))
    with pytest.raises(ConfigError, match="learned no property"):
        generate_candidates(fitted.model, data, 5, tmp_path / "c", target=1.0)


def test_a_potential_without_coverage_keeps_and_flags_every_candidate(toy_run, tmp_path):
    out = tmp_path / "cands"
    invoke("generate", toy_run, "-n", "30", "--out", out, "-g", "relax=emt",
           "-g", "keep=valid", "-g", "training=none")  # EMT knows none of Sr, Ti, O, ...
    report = json.loads((out / "report.json").read_text())
    assert report["relaxation"]["skipped"] > report["accepted"] / 2
    assert report["stability"]["sun_rate"] is None  # novelty was not checked
    rows = [r for r in read_rows(out / "candidates.csv") if r["accepted"] == "True"]
    assert all((out / r["cif"]).exists() for r in rows)  # kept
    skipped = [r for r in rows if r["relax_status"] == "skipped"]
    assert len(skipped) == report["relaxation"]["skipped"]
    assert all("EMT has no parameters" in r["relax_problem"] and r["e_above_hull"] == ""
               and "relaxation skipped" in r["hull_problem"] for r in skipped)


def test_a_missing_hull_reference_is_named_before_any_work(toy_run, tmp_path):
    result = CliRunner().invoke(main, ["generate", str(toy_run), "-n", "5", "--out",
                                       str(tmp_path / "c"), "-g", "relax=emt",
                                       "-g", f"reference={tmp_path / 'nowhere'}"])
    assert result.exit_code == 1 and "nowhere: no such file" in result.output
    assert not (tmp_path / "c" / "candidates.csv").exists()
    result = CliRunner().invoke(main, ["generate", str(toy_run), "-n", "5", "--out",
                                       str(tmp_path / "d"), "-g", "relax=emt",
                                       "-g", "workers=two"])
    assert result.exit_code == 1 and "workers must be a whole number" in result.output
