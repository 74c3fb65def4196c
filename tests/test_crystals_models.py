"""Crystal models: the likelihood's site matching (exactly permutation invariant, equal to
brute force on tiny cells, better than the canonical order), and the latent samplers
(N(0, I), the model's learned prior, seeded and reproducible)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

import betavae_core as bv
from betavae_core.model import PRIORS
from betavae_crystals import from_structures
from betavae_crystals.latents import latent_draws, prior_name
from betavae_crystals.likelihoods import CrystalLikelihood

pytestmark = pytest.mark.usefixtures("fresh_plugins")


def carbons(n: int, seed: int = 0) -> list[Structure]:
    """Single-species cells of 2-4 atoms at random positions (at least 1.2 Å apart)."""
    rng = np.random.default_rng(seed)
    out: list[Structure] = []
    while len(out) < n:
        k = int(rng.integers(2, 5))
        s = Structure(Lattice.cubic(3.0 + rng.uniform(0, 0.3)), ["C"] * k, rng.random((k, 3)))
        if min(s.distance_matrix[np.triu_indices(k, 1)]) > 1.2:
            out.append(s)
    return out


def two_species(n: int, seed: int = 0) -> list[Structure]:
    rng = np.random.default_rng(seed)
    return [Structure(Lattice.cubic(4.0 + 0.1 * rng.random()), ["Na", "Cl", "Cl"],
                      [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, rng.random() * 0.4, 0.1]])
            for _ in range(n)]


def scored(data, seed: int = 0) -> tuple[CrystalLikelihood, torch.Tensor]:
    """A likelihood fitted to `data`'s layout and random decoder output for its items."""
    lik = CrystalLikelihood(data.event_shape)
    lik.check_data(data.x)
    params = torch.randn((len(data), 2, *data.event_shape),
                         generator=torch.Generator().manual_seed(seed)) * 3
    return lik, params


def permuted_sites(x: torch.Tensor, order: list[int]) -> torch.Tensor:
    out = x.clone()
    out[:, 2:] = x[:, 2:][:, order]
    return out


@pytest.mark.parametrize("make", [carbons, two_species])
def test_matched_log_prob_is_exactly_invariant_to_the_order_of_true_sites(make):
    data = from_structures(make(6), primitive=False)
    lik, params = scored(data)
    x = data.x
    base = lik.distribution(params).log_prob(x)
    slots = x.shape[1] - 2
    for seed in range(3):
        order = torch.randperm(slots, generator=torch.Generator().manual_seed(seed)).tolist()
        assert torch.equal(lik.distribution(params).log_prob(permuted_sites(x, order)), base)
    plain = CrystalLikelihood(data.event_shape, site_matching="none")
    plain.load_state_dict(lik.state_dict())
    moved = plain.distribution(params).log_prob(permuted_sites(x, order))
    assert not torch.allclose(moved, plain.distribution(params).log_prob(x))


@pytest.mark.parametrize("make", [carbons, two_species])
def test_matching_equals_the_best_of_every_permutation(make):
    data = from_structures(make(5, seed=3), primitive=False)
    lik, params = scored(data, seed=1)
    plain = CrystalLikelihood(data.event_shape, site_matching="none")
    plain.load_state_dict(lik.state_dict())
    slots = data.x.shape[1] - 2
    brute = torch.stack([plain.distribution(params).log_prob(permuted_sites(data.x, list(p)))
                         for p in itertools.permutations(range(slots))]).max(dim=0).values
    matched = lik.distribution(params).log_prob(data.x)
    torch.testing.assert_close(matched, brute, rtol=0, atol=1e-4)
    assert bool((matched >= plain.distribution(params).log_prob(data.x) - 1e-4).all())


def test_an_unknown_site_matching_is_a_config_error_naming_the_choices():
    with pytest.raises(bv.ConfigError, match=r"site_matching .*hungarian"):
        CrystalLikelihood((6, 5), site_matching="greedy")


def fit(data, tmp_path, **settings) -> bv.BetaVAE:
    given = {"epochs": 3, "seed": 0, "progress": False, "threads": 1, "latent_dim": 4,
             "architecture_options": {"hidden": [32, 16]}, **settings}
    model, train, objective, from_domain = bv.configs_for(data, given)
    bv.fit(data, model, train, objective, out_dir=tmp_path / "run", from_domain=from_domain)
    return bv.load_run(tmp_path / "run").model


@pytest.mark.skipif("mog" not in PRIORS, reason="the core has no mixture prior yet")
def test_learned_prior_draws_are_seeded_and_differ_from_the_standard_normal(tmp_path):
    data = from_structures(two_species(40))
    model = fit(data, tmp_path, prior="mog", prior_options={"components": 3})
    assert prior_name(model).startswith("learned prior mog")

    def draws(source: str, seed: int) -> torch.Tensor:
        return latent_draws(model, 500, source, None, torch.Generator().manual_seed(seed),
                            seed)[0]

    assert torch.equal(draws("prior", 4), draws("prior", 4))
    assert not torch.equal(draws("prior", 4), draws("prior", 5))
    normal = draws("normal", 4)
    assert torch.equal(normal, torch.randn(500, 4, generator=torch.Generator().manual_seed(4)))
    mixture = model.prior_module
    centre = (torch.softmax(mixture.logits, 0)[:, None] * mixture.means).sum(0).detach()
    # the learned prior's draws sit around its own centre, not the standard normal's
    assert torch.allclose(draws("prior", 4).mean(0), centre, atol=0.35)
    assert latent_draws(model, 5, "normal", None, torch.Generator(), 0)[1] == "N(0, I)"


def test_species_match_ignores_site_order_but_not_species():
    """Under site matching the decoded slot order is free: the same species in another
    order still match; a changed species or a dropped site does not."""
    from betavae_crystals.evaluations import species_match

    original = np.array([[38, 22, 8, 8, 8, 0], [6, 6, 6, 6, 0, 0]])
    permuted = np.array([[8, 22, 8, 38, 8, 0], [6, 0, 6, 6, 6, 0]])
    assert species_match(original, permuted) == 1.0
    changed = np.array([[8, 22, 8, 56, 8, 0], [6, 0, 6, 6, 0, 0]])  # Sr -> Ba; a C lost
    assert species_match(original, changed) == 0.0
    assert species_match(original, np.array([permuted[0], changed[1]])) == 0.5
