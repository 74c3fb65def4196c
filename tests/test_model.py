"""The model's two terms (rate per dimension, distortion), its shapes and skip connections,
the likelihoods' log densities, and the objective's weighting of rate against distortion."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from betavae_core import BetaVAE, ConfigError, LossRecord, ModelConfig, Objective
from betavae_core.likelihoods import Bernoulli, Gaussian


def _model(**overrides) -> BetaVAE:
    cfg = {"event_shape": (6,), "latent_dim": 3, "architecture_options": {"hidden": [16, 8]}}
    cfg.update(overrides)
    torch.manual_seed(0)
    return BetaVAE(ModelConfig(**cfg))


def _record(distortion, kl_per_dim) -> LossRecord:
    kl = torch.as_tensor(kl_per_dim, dtype=torch.float32)
    zeros = torch.zeros(kl.shape)
    return LossRecord(torch.as_tensor(distortion, dtype=torch.float32), kl, zeros, zeros)


# --- rate ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prior_kw",
    [
        {"prior": "isotropic"},
        {"prior": "anisotropic"},  # default scales, geometric from 1 down to 0.2
        {"prior": "anisotropic", "prior_scales": [2.0, 0.5, 0.1]},
    ],
    ids=["isotropic", "anisotropic-default", "anisotropic-given"],
)
def test_kl_per_dim_matches_torch_kl_divergence(prior_kw) -> None:
    model = _model(**prior_kw)
    scales = model.prior_scale().detach()
    if "prior_scales" in prior_kw:
        assert torch.allclose(scales, torch.tensor(prior_kw["prior_scales"]))
    elif prior_kw["prior"] == "anisotropic":
        assert scales[0].item() == pytest.approx(1.0)
        assert scales[-1].item() == pytest.approx(0.2)
        assert torch.all(scales[1:] < scales[:-1])
    else:
        assert torch.allclose(scales, torch.ones(3))
    g = torch.Generator().manual_seed(1)
    mu = 2 * torch.randn(50, 3, generator=g)
    logvar = 1.5 * torch.randn(50, 3, generator=g)
    ours = model.kl_per_dim(mu, logvar)
    ref = D.kl_divergence(D.Normal(mu, torch.exp(0.5 * logvar)), D.Normal(0.0, scales))
    assert ours.shape == (50, 3)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert torch.all(ours >= -1e-6)
    # KL is zero exactly when the posterior equals the prior
    at_prior = model.kl_per_dim(torch.zeros(4, 3), (2 * scales.log()).expand(4, 3))
    torch.testing.assert_close(at_prior, torch.zeros(4, 3), atol=1e-6, rtol=0)


def test_loss_record_rate_sums_kl_per_dim() -> None:
    model = _model()
    record = model(torch.randn(7, 6))
    assert record.kl_per_dim.shape == (7, 3)
    assert record.rate.shape == (7,)
    torch.testing.assert_close(record.rate, record.kl_per_dim.sum(dim=1))
    hand = _record([1.0, 2.0], [[0.5, 1.5, 2.0], [0.0, 0.25, 0.25]])
    assert hand.rate.tolist() == [4.0, 0.5]


# --- shapes -------------------------------------------------------------------------------
def test_mlp_with_covariates_output_shapes() -> None:
    model = _model(event_shape=(3, 4), latent_dim=5, covariate_dim=2)
    x, cov = torch.randn(9, 3, 4), torch.randn(9, 2)
    enc = model.encode(x, cov)
    assert enc.mu.shape == enc.logvar.shape == (9, 5)
    assert enc.features is not None and enc.features.shape == (9, 8)
    record = model(x, cov)
    assert record.distortion.shape == (9,)
    assert record.kl_per_dim.shape == record.mu.shape == record.logvar.shape == (9, 5)
    assert torch.isfinite(record.distortion).all()
    px = model.decode(torch.randn(9, 5), cov)
    assert px.batch_shape == (9,)
    assert px.event_shape == (3, 4)
    assert px.mean.shape == (9, 3, 4)
    assert px.log_prob(x).shape == (9,)
    # the covariates are really used by the decoder
    other = model.decode(torch.zeros(9, 5), cov + 1.0).mean
    assert not torch.allclose(model.decode(torch.zeros(9, 5), cov).mean, other)
    assert model.sample_prior(11).shape == (11, 5)


# --- skip connections ---------------------------------------------------------------------
def _decoded_means(model: BetaVAE) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    z = torch.randn(5, 3, generator=g)
    f1, f2 = model.encode(x1).features, model.encode(x2).features
    assert not torch.allclose(f1, f2)
    with torch.no_grad():
        return model.decode(z, skip=f1).mean, model.decode(z, skip=f2).mean


def test_fixed_skip_makes_decoder_depend_on_encoder_features() -> None:
    a, b = _decoded_means(_model(skip="fixed", skip_gate=0.5))
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("skip_kw", [{"skip": "none"}, {"skip": "fixed", "skip_gate": 0.0}])
def test_closed_skip_ignores_encoder_features(skip_kw) -> None:
    model = _model(**skip_kw)
    a, b = _decoded_means(model)
    assert torch.equal(a, b)
    if skip_kw["skip"] == "none":
        assert model.decoder.skip_gate is None


def test_learned_skip_gate_gets_a_gradient_and_fixed_one_does_not_learn() -> None:
    model = _model(skip="learned", skip_gate=0.5)
    gate = model.decoder.skip_gate
    assert gate.logit.requires_grad
    assert gate().item() == pytest.approx(0.5)
    loss = Objective().loss(model(torch.randn(16, 6)), 0.0)
    loss.backward()
    assert gate.logit.grad is not None
    assert gate.logit.grad.abs().item() > 0
    fixed = _model(skip="fixed", skip_gate=0.3).decoder.skip_gate
    assert not fixed.logit.requires_grad
    assert fixed().item() == pytest.approx(0.3)


# --- likelihoods --------------------------------------------------------------------------
def test_gaussian_log_prob_matches_hand_computation() -> None:
    g = torch.Generator().manual_seed(4)
    lik = Gaussian((2, 3))
    log_s = 0.3 * torch.randn(2, 3, generator=g)
    with torch.no_grad():
        lik.log_scale.copy_(log_s)
    params = torch.randn(5, 1, 2, 3, generator=g)
    x = torch.randn(5, 2, 3, generator=g)
    m, s = params[:, 0], log_s.exp()
    hand = (-0.5 * ((x - m) / s) ** 2 - log_s - 0.5 * math.log(2 * math.pi)).sum(dim=(1, 2))
    lp = lik.distribution(params).log_prob(x)
    assert lp.shape == (5,)
    torch.testing.assert_close(lp, hand)
    assert lik.log_scale.requires_grad

    fixed = Gaussian((4,), scale=0.1)
    assert not fixed.log_scale.requires_grad
    p, y = torch.randn(3, 1, 4, generator=g), torch.randn(3, 4, generator=g)
    hand = (-0.5 * ((y - p[:, 0]) / 0.1) ** 2 - math.log(0.1)
            - 0.5 * math.log(2 * math.pi)).sum(dim=1)
    torch.testing.assert_close(fixed.distribution(p).log_prob(y), hand)


def test_bernoulli_log_prob_matches_hand_computation() -> None:
    g = torch.Generator().manual_seed(5)
    lik = Bernoulli((2, 4))
    logits = 3 * torch.randn(6, 1, 2, 4, generator=g)
    x = (torch.rand(6, 2, 4, generator=g) > 0.5).float()
    p = torch.sigmoid(logits[:, 0])
    hand = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(dim=(1, 2))
    lp = lik.distribution(logits).log_prob(x)
    assert lp.shape == (6,)
    torch.testing.assert_close(lp, hand, rtol=1e-4, atol=1e-4)


def test_model_distortion_is_minus_log_prob_of_decoder_output() -> None:
    model = _model(likelihood="bernoulli", event_shape=(2, 4))
    x = (torch.rand(3, 2, 4) > 0.5).float()
    z = torch.randn(3, 3)
    logits = model.decoder(z)[:, 0]
    hand = (x * torch.nn.functional.logsigmoid(logits)
            + (1 - x) * torch.nn.functional.logsigmoid(-logits)).sum(dim=(1, 2))
    torch.testing.assert_close(model.decode(z).log_prob(x), hand)


# --- objective ----------------------------------------------------------------------------
def test_warmup_beta_ramps_linearly_then_holds() -> None:
    obj = Objective(beta=4.0, schedule="warmup", warmup_epochs=10)
    ts = [0.0, 1.0, 2.5, 5.0, 7.5, 9.0]
    assert [obj.beta_at(t) for t in ts] == pytest.approx([0.4 * t for t in ts])
    assert [obj.beta_at(t) for t in (10.0, 10.5, 30.0)] == pytest.approx([4.0] * 3)
    assert obj.capacity_at(3.0) is None
    rec = _record([10.0, 20.0], [[1.0, 1.0], [2.0, 2.0]])
    for t in (0.0, 2.5, 12.0):
        assert obj.loss(rec, t).item() == pytest.approx(15.0 + obj.beta_at(t) * 3.0)


def test_constant_beta_is_constant() -> None:
    obj = Objective(beta=0.25)
    assert {obj.beta_at(t) for t in (0.0, 0.3, 7.0, 100.0)} == {0.25}


def test_cyclical_beta_resets_each_cycle() -> None:
    obj = Objective(beta=2.0, schedule="cyclical", cycle_epochs=4, cycle_ramp=0.5)
    for start in (0.0, 4.0, 8.0):
        got = [obj.beta_at(start + dt) for dt in (0.0, 0.5, 1.0, 2.0, 3.0, 3.9)]
        assert got == pytest.approx([0.0, 0.5, 1.0, 2.0, 2.0, 2.0])
    assert obj.beta_at(3.99) > 1.9 and obj.beta_at(4.0) == pytest.approx(0.0)


def test_capacity_rises_to_c_and_loss_is_distortion_plus_gamma_abs_gap() -> None:
    obj = Objective(capacity=10.0, capacity_epochs=5, gamma=50.0)
    caps = [obj.capacity_at(t) for t in (0.0, 1.0, 2.5, 5.0, 6.0, 50.0)]
    assert caps == pytest.approx([0.0, 2.0, 5.0, 10.0, 10.0, 10.0])
    below = _record([4.0, 6.0], [[1.0, 2.0], [1.0, 2.0]])  # rate 3 < C
    above = _record([4.0, 6.0], [[7.0, 7.0], [7.0, 7.0]])  # rate 14 > C
    assert obj.loss(below, 5.0).item() == pytest.approx(5.0 + 50.0 * 7.0)
    assert obj.loss(above, 5.0).item() == pytest.approx(5.0 + 50.0 * 4.0)
    assert obj.loss(below, 1.0).item() == pytest.approx(5.0 + 50.0 * 1.0)  # C(1) = 2


def test_settled_objective_is_the_loss_once_every_schedule_has_run_its_course() -> None:
    rec = _record([4.0, 6.0], [[1.0, 2.0], [1.0, 2.0]])  # distortion 5, KL (1, 2)
    cases = [
        (Objective(beta=3.0), [0.0, 9.0], [True, True]),
        (Objective(beta=3.0, schedule="warmup", warmup_epochs=4), [3.0, 4.0], [False, True]),
        (Objective(beta=3.0, schedule="cyclical", cycle_epochs=4), [1.0, 3.0], [False, True]),
        (Objective(beta=3.0, schedule="cyclical", cycle_epochs=1), [1.0, 2.0], [True, True]),
        (Objective(beta=3.0, schedule="cyclical", cycle_epochs=4), [5.0, 8.0], [False, True]),
        (Objective(capacity=10.0, capacity_epochs=5, gamma=50.0), [4.0, 5.0], [False, True]),
    ]
    for obj, ts, settled in cases:
        assert [obj.settled_at(t) for t in ts] == settled, obj
        full = 5.0 + (50.0 * 7.0 if obj.capacity else 3.0 * 3.0)  # rate 3, C = 10
        assert obj.target_value(5.0, [1.0, 2.0]) == pytest.approx(full)
        if obj.schedule != "cyclical":  # (a cyclical schedule restarts at a cycle's end)
            assert obj.loss(rec, ts[-1]).item() == pytest.approx(full)
    assert Objective(beta=3.0, free_bits=1.5).target_value(5.0, [1.0, 2.0]) == pytest.approx(
        5.0 + 3.0 * 3.5)


def test_free_bits_cut_the_gradient_only_below_the_threshold() -> None:
    n = 4
    kl = torch.tensor([[0.1, 2.0], [0.2, 1.0], [0.0, 3.0], [0.1, 2.0]], requires_grad=True)
    distortion = torch.full((n,), 5.0, requires_grad=True)
    record = LossRecord(distortion, kl, torch.zeros(n, 2), torch.zeros(n, 2))
    obj = Objective(beta=3.0, free_bits=0.5)
    loss = obj.loss(record, 0.0)
    # dimension 0 has batch-mean KL 0.1 < 0.5: counted as 0.5; dimension 1 (2.0) as itself
    assert loss.item() == pytest.approx(5.0 + 3.0 * (0.5 + 2.0))
    loss.backward()
    assert torch.equal(kl.grad[:, 0], torch.zeros(n))
    torch.testing.assert_close(kl.grad[:, 1], torch.full((n,), 3.0 / n))
    torch.testing.assert_close(distortion.grad, torch.full((n,), 1.0 / n))
    # the logged rate stays the true KL
    assert record.rate.tolist() == pytest.approx([2.1, 1.2, 3.0, 2.1])
    # without free bits both dimensions get the ordinary gradient
    kl.grad = None
    Objective(beta=3.0).loss(record, 0.0).backward()
    torch.testing.assert_close(kl.grad, torch.full((n, 2), 3.0 / n))


# --- invalid configurations ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Objective(beta=0.0), "beta"),
        (lambda: Objective(beta=-1.0), "beta"),
        (lambda: Objective(beta=float("nan")), "beta"),
        (lambda: Objective(schedule="linear"), "schedule"),
        (lambda: Objective(schedule="warmup", warmup_epochs=0), "warmup_epochs"),
        (lambda: Objective(cycle_ramp=0.0), "cycle_ramp"),
        (lambda: Objective(capacity=-1.0), "capacity"),
        (lambda: Objective(free_bits=-0.1), "free_bits"),
        (lambda: ModelConfig(event_shape=(4,), latent_dim=0), "latent_dim"),
        (lambda: ModelConfig(event_shape=(4,), prior="cauchy"), "prior"),
        (lambda: ModelConfig(event_shape=(4,), prior="student_t", prior_options={"nu": 2}),
         "student_t"),
        (lambda: ModelConfig(event_shape=(4,), prior="conditional"), "covariates"),
        (lambda: ModelConfig(event_shape=(4,), beta_range=[2.0, 1.0]), "beta_range"),
        (lambda: ModelConfig(event_shape=(4,), latent_dim=3, prior="anisotropic",
                             prior_scales=[1.0, 0.5]), "prior_scales"),
        (lambda: ModelConfig(event_shape=(4,), latent_dim=2, prior_scales=[1.0, -1.0]),
         "prior_scales"),
        (lambda: BetaVAE(ModelConfig(event_shape=(4,), skip="sometimes")), "skip"),
        (lambda: BetaVAE(ModelConfig(event_shape=(4,), skip="fixed", skip_gate=1.5)),
         "skip_gate"),
        (lambda: BetaVAE(ModelConfig(event_shape=(4,), architecture_options={"hidden": []})),
         "hidden"),
    ],
)
def test_invalid_config_raises_config_error_naming_the_field(make, field) -> None:
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        make()
