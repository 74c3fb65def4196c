"""One model for several lattice sizes: padding, the pooled encoder, the padded spin
likelihood, the ising2d_sizes dataset and the finite_size_scaling evaluation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import betavae_core as bv
from betavae_core import ArchitectureRequest, ConfigError, DataError
from betavae_fields import evaluations, multisize, readout
from betavae_fields.datasets import load_ising2d_sizes
from betavae_fields.likelihoods import Spin

pytestmark = pytest.mark.usefixtures("fresh_plugins")


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BETAVAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mc-cache"))


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory) -> bv.DomainData:
    """ising2d_sizes at L = 8 and 12, 6 temperatures around Tc, 48 configurations each."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BETAVAE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mc-cache"))
        return load_ising2d_sizes(sizes="8,12", t_min=2.0, t_max=2.6, n_temperatures=6,
                                  samples=48)


def spins(n: int, L: int, seed: int) -> np.ndarray:
    return np.where(np.random.default_rng(seed).random((n, L, L)) < 0.5, -1.0, 1.0)


LOCAL = {"dilations": [1, 1, 1]}  # a 7 x 7 receptive field: fits the L = 8 lattices here
SAVED = {"channels": 16}  # no dilations option: the default, as in runs saved before it


def encoder(top: int, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    request = ArchitectureRequest(event_shape=(top, top), latent_dim=2, params_per_element=1,
                                  options=options or LOCAL)
    return multisize.build_lattice_fcn(request)[0].eval()


def test_pad_and_sides_round_trip():
    x, side = multisize.pad([spins(3, 8, 0), spins(2, 12, 1)])
    assert x.shape == (5, 12, 12) and side.tolist() == [8, 8, 8, 12, 12]
    assert multisize.sides(torch.as_tensor(x)).tolist() == side.tolist()
    assert np.all(x[:3, 8:, :] == 0) and np.all(x[:3, :, 8:] == 0)


def test_pooled_encoder_means_the_same_at_any_padding_shift_and_batch():
    small, big = spins(4, 8, 2), spins(3, 16, 3)
    enc = encoder(16)
    with torch.no_grad():
        mixed = enc(torch.as_tensor(multisize.pad([small, big])[0], dtype=torch.float32)).mu
        alone = enc(torch.as_tensor(small, dtype=torch.float32)).mu
        rolled = np.roll(small, (3, 5), axis=(1, 2))
        padded_more = multisize.pad([rolled, spins(1, 24, 4)])[0][:4]
        shifted = enc(torch.as_tensor(padded_more, dtype=torch.float32)).mu
    torch.testing.assert_close(mixed[:4], alone, atol=1e-5, rtol=0)  # grouping by L
    torch.testing.assert_close(shifted, alone, atol=1e-5, rtol=0)  # padding and translation
    assert not torch.allclose(mixed[4:], mixed[:3])


def test_encoder_reads_the_side_of_real_fields_where_zero_is_a_value():
    """phi^4-like fields (0 a valid value, here a whole first row of it): `sides`, which
    reads L from the first row, fails; `extents` and the encoder read it right, unpadded
    or padded, so one encoder reads every size."""
    rng = np.random.default_rng(7)
    field = rng.standard_normal((3, 12, 12)).astype(np.float32)
    field[:, 0, :] = 0.0
    assert multisize.sides(torch.as_tensor(field)).tolist() == [0, 0, 0]
    padded = multisize.pad([field, np.zeros((0, 16, 16), np.float32)])[0]
    for x in (field, padded):
        assert multisize.extents(torch.as_tensor(x)).tolist() == [12, 12, 12]
    enc = encoder(16)
    with torch.no_grad():
        alone = enc(torch.as_tensor(field)).mu
        inside = enc(torch.as_tensor(padded)).mu
    torch.testing.assert_close(inside, alone, atol=1e-5, rtol=0)


def head_encoder(top: int, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    request = ArchitectureRequest(event_shape=(top, top), latent_dim=2, params_per_element=1,
                                  options={"channels": 4, "hidden": 8, **LOCAL, **options})
    return multisize.build_lattice_fcn(request)[0].eval()


def test_linear_head_makes_mu_a_site_average_affine_in_the_pooled_features():
    """head=linear: mu of a configuration tiled 2 x 2 (L = 8 -> 16) equals mu of the
    original, and mu is exactly affine in the pooled site averages; the mlp head is not
    (the check can fail), and its modules are those of runs saved before the option."""
    up = np.linspace(0.0, 1.0, 24)[:, None, None]  # all down ... all up
    small = np.where(np.random.default_rng(8).random((24, 8, 8)) < up, 1.0, -1.0)
    tiled = np.tile(small, (1, 2, 2))
    residuals = {}
    for head in ("linear", "mlp"):
        enc = head_encoder(16, head=head)
        with torch.no_grad():
            for weight in enc.parameters():  # any weights: away from the near-linear init
                weight.mul_(4.0)
            x = torch.as_tensor(small, dtype=torch.float32)
            mu = enc(x).mu.double()
            big = enc(torch.as_tensor(tiled, dtype=torch.float32)).mu.double()
            p = enc.pooled(x).double()
        torch.testing.assert_close(big, mu, atol=1e-5 * float(mu.abs().max()), rtol=0)
        design = torch.cat([p, torch.ones(len(p), 1, dtype=p.dtype)], dim=1)  # 9 < 24 rows
        fit = torch.linalg.lstsq(design, mu).solution
        residuals[head] = float((design @ fit - mu).abs().max() / mu.std())
    assert residuals["linear"] < 1e-5 and residuals["mlp"] > 1e-3, residuals
    old = {k.split(".")[0] for k in head_encoder(16).state_dict()}
    assert old == {"convs", "dense", "head"}
    with pytest.raises(ConfigError, match="head='affine'.*head=linear"):
        head_encoder(16, head="affine")


def test_dilations_set_the_receptive_field_and_warn_on_a_narrower_lattice():
    """Features of dilations 1,1,1 see 7 x 7 sites: flipping a spin 7 sites away (diagonally)
    leaves the feature at the origin unchanged, while the default 1,2,4 (15 x 15, what runs
    saved without the option hold: same modules, same outputs) sees it. A lattice narrower
    than the receptive field gets a warning naming both."""
    x = torch.as_tensor(spins(1, 16, 9), dtype=torch.float32)
    far = x.clone()
    far[0, 7, 7] *= -1
    changed = {}
    for name, options in (("local", LOCAL), ("default", SAVED)):
        enc = encoder(16, **options)
        with torch.no_grad():
            a, b = (enc.convs(v[:, None])[0, :, 0, 0] for v in (x, far))
        changed[name] = float((a - b).abs().max())
    assert changed["local"] == 0.0 and changed["default"] > 1e-4, changed
    default, explicit = encoder(16, **SAVED), encoder(16, dilations=[1, 2, 4])
    assert [c.dilation for c in default.convs if isinstance(c, torch.nn.Conv2d)] == [
        (1, 1), (2, 2), (4, 4)]
    assert {k: v.shape for k, v in default.state_dict().items()} == {
        k: v.shape for k, v in encoder(16).state_dict().items()}
    with torch.no_grad():
        torch.testing.assert_close(default(x).mu, explicit(x).mu)
    small = torch.as_tensor(multisize.pad([spins(2, 8, 10), spins(2, 16, 11)])[0])
    with pytest.warns(UserWarning, match=r"dilations 1,2,4 sees a 15 x 15 patch.*L = 8; "
                                         r"sizes \[8, 16\].*dilations=1,1,1"):
        default(small)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per encoder; a 7 x 7 patch fits L = 8
        default(small)
        assert encoder(16)(small).mu.shape == (4, 2)
    with pytest.raises(ConfigError, match="dilations=0 must be one or more integers"):
        encoder(16, dilations=0)


def test_padded_spin_scores_only_the_squares_and_names_bad_padding():
    x, side = multisize.pad([spins(2, 8, 5), spins(2, 12, 6)])
    x = torch.as_tensor(x, dtype=torch.float32)
    logits = torch.randn(4, 1, 12, 12)
    lik = multisize.PaddedSpin((12, 12))
    lik.check_data(x)
    lp = lik.distribution(logits).log_prob(x)
    with_context = lik.distribution(logits, {"L": torch.as_tensor(side)}).log_prob(x)
    small = Spin((8, 8)).distribution(logits[:2, :, :8, :8]).log_prob(x[:2, :8, :8])
    torch.testing.assert_close(lp[:2], small)
    torch.testing.assert_close(with_context, lp)
    draws = lik.distribution(logits, {"L": torch.as_tensor(side)}).sample()
    assert torch.all(draws[:2, 8:, :] == 0) and set(draws[2:].unique().tolist()) == {-1, 1}
    x[1, 9, 2] = 1.0  # a spin in the padding
    with pytest.raises(DataError, match="item 1 .L = 8"):
        lik.check_data(x)


def test_one_model_trains_on_several_sizes_and_scales_its_latent(tmp_path, two_sizes):
    data = two_sizes
    assert data.attrs["sizes"] == [8, 12] and data.x.shape == (576, 12, 12)
    configs = bv.configs_for(data, {"epochs": 2, "progress": False, "architecture_options": {
        "channels": 4, "hidden": 8, "dilations": "1,1,1"}})[:3]
    result = bv.fit(data, *configs, out_dir=tmp_path / "run")
    first, last = result.history[0], result.history[-1]
    assert len(result.history) == 2 and all(np.isfinite(v) for v in last.values()
                                            if isinstance(v, float))
    assert first != last
    report = bv.evaluate(result.model, data, names=["finite_size_scaling"])
    fss = report["finite_size_scaling"]
    assert fss["sizes"] == [8, 12]
    assert set(fss["latent"]) == set(fss["latent_decoded"]) == {"crossings", "extrapolated",
                                                                  "collapse"}
    assert fss["tc_exact"] == pytest.approx(2.269185, abs=1e-5)


def test_finite_size_scaling_of_a_latent_that_is_m_matches_monte_carlo(monkeypatch, two_sizes):
    data = two_sizes

    def encode(model, d):  # z1 = m of each item's square, z0 even in the spins
        L = np.asarray(d.metadata["L"], dtype=np.float64)
        m = d.x.double().sum(dim=(1, 2)).numpy() / L**2
        mu = np.stack([0.01 * m**2, m], axis=1)
        return mu, np.zeros_like(mu)

    monkeypatch.setattr(bv, "encode", encode)
    monkeypatch.setattr(evaluations, "order_latent", lambda model, a, b, cov=None: 1)
    # a decoder whose expected spin is 2 z1 + z0 (not odd: z0 is even), read per item
    monkeypatch.setattr(readout, "decoded_magnetization",
                        lambda model, mu, sides, covariates=None: 2 * mu[:, 1] + mu[:, 0])
    result = evaluations.finite_size_scaling(bv.RunContext(model=None, heldout=data))
    mc = result.metrics["mc_abs_m"]["collapse"]
    for name in ("latent", "latent_decoded"):
        latent = result.metrics[name]["collapse"]
        assert latent["tc"] == pytest.approx(mc["tc"], abs=max(latent["tc_error"], 1e-3))
    assert {"latent_binder", "latent_collapse", "mc_abs_m_binder",
            "latent_decoded_binder"} <= set(result.figures)


def test_finite_size_scaling_refuses_one_size_naming_it():
    data, _ = bv.load_data("ising2d", options={"L": 8, "n_temperatures": 4, "samples": 8})
    with pytest.raises(ConfigError, match=r"at least 2 lattice sizes.*L = \[8\]"):
        evaluations.finite_size_scaling(bv.RunContext(model=None, heldout=data))
    with pytest.raises(ConfigError, match="at least 2 distinct lattice sizes"):
        bv.load_data("ising2d_sizes", options={"sizes": "16"})
    with pytest.raises(ConfigError, match="at least 2 distinct lattice sizes"):
        bv.load_data("ising2d_sizes", options=bv.parse_options(["sizes=16,16"]))


def test_default_evaluations_pick_by_the_number_of_sizes(two_sizes):
    one, _ = bv.load_data("ising2d", options={"L": 8, "n_temperatures": 4, "samples": 8})
    by_name = {e.name: e for e in bv.registry("evaluations")}
    assert by_name["critical_point"].applies_to(one)
    assert not by_name["finite_size_scaling"].applies_to(one)
    assert by_name["finite_size_scaling"].applies_to(two_sizes)
    assert not by_name["critical_point"].applies_to(two_sizes)
    assert not by_name["generated_physics"].applies_to(two_sizes)
