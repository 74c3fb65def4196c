"""The fields plugin's likelihoods, architecture and transition estimators."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import vonmises

from betavae_core import ArchitectureRequest, ConfigError, DataError
from betavae_fields import transition
from betavae_fields.architecture import build_lattice_conv
from betavae_fields.likelihoods import MultiscaleSpin, Spin, VonMises


def all_configs(L: int) -> torch.Tensor:
    """Every +-1 configuration of an L x L lattice (L * L <= 16)."""
    bits = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=L * L)))
    return bits.view(-1, L, L)


def random_multiscale(L: int, seed: int = 0):
    torch.manual_seed(seed)
    lik = MultiscaleSpin((L, L))
    with torch.no_grad():
        lik.kernels.normal_(0.0, 0.8)
    params = torch.randn(1, 2, L, L)
    return lik, params


def test_multiscale_probabilities_sum_to_one():
    lik, params = random_multiscale(4)
    configs = all_configs(4)
    assert len(lik.spacings) == 1
    dist = lik.distribution(params.expand(len(configs), -1, -1, -1))
    total = torch.logsumexp(dist.log_prob(configs).double(), dim=0)
    assert abs(float(total.detach())) < 1e-4


def test_multiscale_samples_follow_its_log_prob():
    lik, params = random_multiscale(4, seed=1)
    configs = all_configs(4)
    probs = lik.distribution(params.expand(len(configs), -1, -1, -1)).log_prob(configs).exp()
    probs = probs.detach()
    # nearest-neighbour correlation of site (0,0) with (0,1): exact vs sampled
    pair = configs[:, 0, 0] * configs[:, 0, 1]
    exact = float((probs * pair).sum())
    n = 40000
    torch.manual_seed(3)
    draws = lik.distribution(params.expand(n, -1, -1, -1)).sample()
    sampled = float((draws[:, 0, 0] * draws[:, 0, 1]).mean())
    assert abs(sampled - exact) < 4 * math.sqrt((1 - exact**2) / n) + 1e-3
    assert set(torch.unique(draws).tolist()) == {-1.0, 1.0}


def test_multiscale_with_zero_couplings_is_the_factorised_model():
    lik = MultiscaleSpin((8, 8))
    params = torch.randn(5, 2, 8, 8)
    x = torch.where(torch.rand(5, 8, 8) < 0.5, 1.0, -1.0)
    factorised = Spin((8, 8)).distribution(params[:, :1]).log_prob(x)
    assert torch.allclose(lik.distribution(params).log_prob(x), factorised, atol=1e-5)


def cold_ising(L: int = 8, n: int = 128) -> torch.Tensor:
    """Monte Carlo configurations at T = 1.8 (ordered phase), flipped to majority +1."""
    from betavae_fields import montecarlo as mc

    x = torch.as_tensor(mc.sample_ising(L, [1.8], n, seed=0).configs, dtype=torch.float32)
    return x * torch.sign(x.sum(dim=(1, 2)) + 0.5)[:, None, None]


def bond_energy(x: torch.Tensor) -> np.ndarray:
    """Nearest-neighbour Ising energy per site (J = 1, periodic)."""
    c = x.numpy()
    return -(c * (np.roll(c, 1, 1) + np.roll(c, 1, 2))).mean(axis=(1, 2))


def fit_uniform_multiscale(x: torch.Tensor, learn_scales: bool
                           ) -> tuple[MultiscaleSpin, torch.Tensor]:
    """Fit the couplings (and, if asked, the per-stage field scales) with one uniform
    (field, log gain) for every item, the best decoder without a latent; returns the
    likelihood and that pair."""
    torch.manual_seed(0)
    lik = MultiscaleSpin(tuple(x.shape[1:]))
    lik.field_scales.requires_grad_(learn_scales)
    uniform = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([p for p in [*lik.parameters(), uniform] if p.requires_grad],
                           lr=0.1)
    for _ in range(100):
        loss = -lik.distribution(uniform_params(uniform, len(x), x.shape[1])).log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lik, uniform.detach()


def uniform_params(uniform: torch.Tensor, n: int, L: int) -> torch.Tensor:
    return uniform[None, :, None, None].expand(n, 2, L, L)


def test_per_stage_field_scales_fix_the_energy_of_a_cold_ensemble():
    """In the ordered phase the coarsest sites have only the field to go on, while the
    finest follow their neighbours: one field for every stage draws the coarse sites
    with far too many flips (the high-energy tail of generated configurations). Scaled
    per stage, the coarse sites flip as often as Monte Carlo's and the energy matches."""
    from scipy.stats import wasserstein_distance

    x = cold_ising()
    coarse = MultiscaleSpin((8, 8)).masks[0].bool()
    data_flips = float((x[:, coarse] < 0).float().mean())
    w1, flips = {}, {}
    for learn in (False, True):
        lik, uniform = fit_uniform_multiscale(x, learn)
        torch.manual_seed(1)
        draws = lik.distribution(uniform_params(uniform, 2000, 8)).sample()
        flips[learn] = float((draws[:, coarse] < 0).float().mean())
        w1[learn] = wasserstein_distance(bond_energy(draws), bond_energy(x))
    assert flips[False] > 2.5 * data_flips
    assert abs(flips[True] - data_flips) < 0.5 * data_flips
    assert w1[True] < 0.4 * w1[False]


def test_multiscale_weights_saved_before_the_stage_scales_load_as_before():
    lik = MultiscaleSpin((8, 8))
    with torch.no_grad():
        lik.kernels.normal_()
    params = torch.randn(3, 2, 8, 8)
    x = torch.where(torch.rand(3, 8, 8) < 0.5, 1.0, -1.0)
    old = {k: v for k, v in lik.state_dict().items()
           if k not in ("field_scales", "gain_powers")}
    fresh = MultiscaleSpin((8, 8))
    with torch.no_grad():
        fresh.field_scales.fill_(3.0)
        fresh.gain_powers.fill_(0.5)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.kernels, lik.kernels)
    assert torch.equal(fresh.field_scales, torch.ones(len(fresh.masks)))
    assert torch.equal(fresh.gain_powers, torch.ones(len(fresh.masks)))
    assert torch.allclose(fresh.distribution(params).log_prob(x),
                          lik.distribution(params).log_prob(x))


def test_spin_likelihoods_name_the_bad_site():
    x = torch.ones(3, 8, 8)
    x[2, 4, 5] = 0.5
    for lik in (Spin((8, 8)), MultiscaleSpin((8, 8))):
        with pytest.raises(DataError, match=r"item 2 holds 0.5 at site \(4, 5\)"):
            lik.check_data(x)
    zero_one = (torch.rand(3, 8, 8) < 0.5).float()
    with pytest.raises(DataError, match="2\\*x - 1"):
        Spin((8, 8)).check_data(zero_one)


def test_non_square_items_are_refused_with_the_expected_shape():
    with pytest.raises(DataError, match=r"\(n, L, L\).*\(8, 6\)"):
        Spin((8, 6))
    with pytest.raises(DataError, match=r"\(n, L, L\)"):
        VonMises((64,))


def test_multiscale_needs_even_L():
    with pytest.raises(DataError, match="even lattice size"):
        MultiscaleSpin((7, 7))


@pytest.mark.parametrize("L, stages, coarsest_sites", [(4, 4, 4), (8, 7, 4), (24, 10, 9),
                                                        (32, 13, 4)])
def test_multiscale_order_covers_every_site_once(L, stages, coarsest_sites):
    from betavae_fields.lattice import multiscale_masks

    masks, spacings = multiscale_masks(L)
    assert masks.shape == (stages, L, L) and len(spacings) == (stages - 1) // 3
    assert torch.equal(masks.sum(0), torch.ones(L, L))
    assert int(masks[0].sum()) == coarsest_sites


def test_von_mises_matches_scipy_and_wraps():
    lik = VonMises((2, 2))
    params = torch.tensor([[[[1.0, -2.0], [0.3, 0.0]], [[0.5, 1.5], [-0.2, 3.0]]]])
    x = torch.tensor([[[0.1, 2.5], [-3.0, 1.0]]])
    a, b = params[0, 0].double().numpy(), params[0, 1].double().numpy()
    kappa, loc = np.hypot(a, b), np.arctan2(b, a)
    expected = vonmises.logpdf(x[0].double().numpy(), kappa, loc=loc).sum()
    got = float(lik.distribution(params).log_prob(x))
    assert got == pytest.approx(expected, abs=1e-4)
    shifted = float(lik.distribution(params).log_prob(x + 2 * math.pi))
    assert shifted == pytest.approx(got, abs=1e-3)
    sample = lik.distribution(params.expand(500, -1, -1, -1)).sample()
    assert sample.min() >= -math.pi and sample.max() <= math.pi


def request(L: int, params: int = 2, **options) -> ArchitectureRequest:
    return ArchitectureRequest(event_shape=(L, L), latent_dim=3, params_per_element=params,
                               options=options)


def test_lattice_conv_shapes_and_periodic_padding():
    enc, dec = build_lattice_conv(request(12), embedding="circle")
    out = enc(torch.rand(4, 12, 12) * 6)
    assert out.mu.shape == (4, 3)
    assert dec(out.mu).shape == (4, 2, 12, 12)
    convs = [m for m in [*enc.modules(), *dec.modules()] if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.padding_mode == "circular" for c in convs)


def test_lattice_conv_encoder_is_blind_to_the_seam():
    """With circular padding, shifting by the total stride (4) only permutes the flattened
    features, so a dense layer sees the same numbers in another order."""
    enc, _ = build_lattice_conv(request(8))
    x = torch.randn(2, 8, 8)
    a = enc.convs(x[:, None]).flatten().sort().values
    b = enc.convs(torch.roll(x, shifts=(4, 4), dims=(1, 2))[:, None]).flatten().sort().values
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("L", [4, 6, 10])
def test_lattice_conv_refuses_small_or_odd_sizes(L):
    with pytest.raises(ConfigError, match=f"L >= 8 and divisible by 4; got L={L}"):
        build_lattice_conv(request(L))


def synthetic_transition(tc: float, seed: int = 0):
    """|v| per temperature: a smooth step at tc with variance peaking at tc."""
    rng = np.random.default_rng(seed)
    temps = np.round(np.linspace(1.6, 3.2, 33), 6)
    control, values = [], []
    for t in temps:
        mean = 2.0 + 0.5 * (1 - np.tanh((t - tc) / 0.15))
        sd = 0.02 + 0.2 * np.exp(-((t - tc) / 0.2) ** 2)
        values.append(mean + sd * rng.standard_normal(4000))
        control.append(np.full(4000, t))
    return np.concatenate(values), np.concatenate(control)


def test_transition_estimators_recover_a_known_critical_point():
    values, control = synthetic_transition(2.31)
    c = transition.curves(values, control, n_sites=1, per_temperature=False)
    assert transition.susceptibility_peak(c) == pytest.approx(2.31, abs=0.01)
    assert transition.inflection(c) == pytest.approx(2.31, abs=0.01)


def test_finite_size_extrapolation_is_exact_on_exact_data():
    sizes = [16, 24, 32]
    fit = transition.extrapolate(sizes, [transition.TC_ISING + 0.6 / L for L in sizes])
    assert fit.tc == pytest.approx(transition.TC_ISING, abs=1e-9)
    assert fit.slope == pytest.approx(0.6)
    with pytest.raises(DataError, match="two or more distinct L"):
        transition.extrapolate([16], [2.3])


def test_too_few_temperatures_is_an_error():
    with pytest.raises(DataError, match="at least 3 distinct"):
        transition.curves(np.ones(4), np.array([1.0, 1.0, 2.0, 2.0]), 16)


def test_binder_point_finds_where_the_cumulant_reaches_its_critical_value():
    """v = +-1 + sigma(T) * noise has U(T) = 1 - (1 + 6s^2 + 3s^4) / (3 (1 + s^2)^2) in
    closed form (s = sigma(T)); the estimate must land on the exact crossing of U*."""
    rng = np.random.default_rng(0)
    temps = np.round(np.linspace(1.6, 3.2, 33), 6)

    def sigma(t):
        return np.exp(2.0 * (t - 2.4))

    def exact_u(t):
        s2 = sigma(t) ** 2
        return 1 - (1 + 6 * s2 + 3 * s2**2) / (3 * (1 + s2) ** 2)

    fine = np.linspace(1.6, 3.2, 200001)
    target = fine[np.argmin(np.abs(exact_u(fine) - transition.BINDER_ISING))]
    values = np.concatenate([rng.choice([-1.0, 1.0], 20000) + sigma(t) * rng.standard_normal(
        20000) for t in temps])
    control = np.repeat(temps, 20000)
    c = transition.curves(values, control, n_sites=1)
    assert transition.binder_point(c) == pytest.approx(target, abs=0.01)
    shifted = transition.curves(values * 7.3, control, n_sites=1)  # U ignores the scale
    assert transition.binder_point(shifted) == pytest.approx(transition.binder_point(c))
