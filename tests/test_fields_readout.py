"""The latent read back through the decoder (betavae_fields.readout).

A hand-built model whose encoder is a known warp of m (mu = tanh(3 m), the kind of
monotone warp a trained encoder picks) and whose decoder expects the spin that undoes
it, as a trained factorised decoder does (E[m | z]): the decoded readout then gives m
back, so its Binder cumulant is m's, while the raw latent's is not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import betavae_core as bv
from betavae_core import DataError, EncoderOutput
from betavae_fields import evaluations, multisize, readout, scaling

TOP, SIZES, GAIN = 16, (8, 12), 3.0


def warp(m: torch.Tensor) -> torch.Tensor:
    return torch.tanh(GAIN * m)


class WarpEncoder(nn.Module):
    """mu = (tanh(3 m), m^2) with m the site mean over each item's own square."""

    def forward(self, x: torch.Tensor, cond=None) -> EncoderOutput:
        L = multisize.extents(x)
        m = (x * multisize.valid_mask(L, x.shape[-1])).sum(dim=(1, 2)) / (L * L)
        mu = torch.stack([warp(m), m * m], dim=1)
        return EncoderOutput(mu, torch.zeros_like(mu), mu)


class UnwarpDecoder(nn.Module):
    """Logits whose expected spin tanh(logit / 2) is the inverse warp of z0 on every
    site a lattice of the data can hold, and +5 on the padding only (rows >= 12), which
    a readout that averaged over the padding would pick up."""

    def forward(self, z: torch.Tensor, cond=None, skip=None) -> torch.Tensor:
        m = torch.atanh(z[:, 0].clamp(-0.999999, 0.999999)) / GAIN
        logits = 2.0 * torch.atanh(m.clamp(-0.999999, 0.999999))
        out = logits[:, None, None, None].expand(-1, 1, TOP, TOP).clone()
        out[:, :, max(SIZES):, :] = 5.0
        return out


def configurations(seed: int = 0, per_cell: int = 40):
    """Padded spins of L = 8 and 12 in 4 groups ("temperatures") of increasing order."""
    rng = np.random.default_rng(seed)
    configs, control, side = {L: [] for L in SIZES}, [], []
    for L in SIZES:
        for k, bias in enumerate((0.05, 0.2, 0.3, 0.4)):
            sign = rng.choice([-1.0, 1.0], (per_cell, 1, 1))
            up = rng.random((per_cell, L, L)) < 0.5 + sign * bias
            configs[L].append(np.where(up, 1.0, -1.0))
            control.append(np.full(per_cell, 2.0 + k))
            side.append(np.full(per_cell, L))
    x, _ = multisize.pad([np.concatenate(configs[L]) for L in SIZES]
                         + [np.zeros((0, TOP, TOP))])
    data = bv.DomainData(x=torch.as_tensor(x, dtype=torch.float32), domain="fields",
                         likelihood="spin_padded", architecture="lattice_fcn",
                         attrs={"model": "ising"})
    return data, np.concatenate(control), np.concatenate(side)


@pytest.fixture(scope="module")
def warped():
    data, control, side = configurations()
    model = bv.BetaVAE(bv.ModelConfig.for_data(data, latent_dim=2, architecture_options={
        "channels": 2, "hidden": 4, "dilations": "1"}))
    model.encoder, model.decoder = WarpEncoder(), UnwarpDecoder()
    return model.eval(), data, control, side


def test_decoded_readout_undoes_the_warp_and_keeps_the_binder_cumulant(warped):
    model, data, control, side = warped
    x = data.x.numpy()
    m = np.array([x[i, :L, :L].mean() for i, L in enumerate(side)])
    mu, _ = bv.encode(model, data)
    flipped = evaluations.flipped_means(model, data)
    z0 = evaluations.order_values(model, data, mu, 0, flipped=flipped)
    decoded = readout.decoded_odd(model, mu, flipped, side)
    np.testing.assert_allclose(decoded, m, atol=1e-5)
    assert np.abs(readout.decoded_magnetization(model, mu) - m).max() > 0.05  # padding in

    def binder(values):
        curves = scaling.binder_curves(values, control, side, n_boot=10)
        return np.concatenate([curves.binder[L] for L in SIZES])

    assert np.abs(binder(decoded) - binder(m)).max() < 1e-5
    assert np.abs(binder(z0) - binder(m)).max() > 0.02


def test_decoded_readout_is_odd_under_a_spin_flip(warped):
    """Swapping the configurations and their flips changes the readout's sign exactly,
    also where the decoder itself is not odd (its +5 padding would break that)."""
    model, data, _, side = warped
    mu, _ = bv.encode(model, data)
    flipped = evaluations.flipped_means(model, data)
    np.testing.assert_array_equal(readout.decoded_odd(model, flipped, mu, side),
                                  -readout.decoded_odd(model, mu, flipped, side))
    with pytest.raises(DataError, match="sides has 3 entries for 320 posterior means"):
        readout.decoded_magnetization(model, mu, side[:3])
    with pytest.raises(DataError, match="decoded_odd: mu .320, 2. and flipped .3, 2."):
        readout.decoded_odd(model, mu, flipped[:3], side)


def test_a_uniform_decoder_is_read_on_a_small_torus_with_the_same_values(warped):
    """lattice_fcn's broadcast decoder gives every site the same parameters, so the
    readout decodes on a 4 x 4 torus: equal to the site mean of the full decode over
    each item's own square (and the decoder is indeed uniform there)."""
    _, data, _, side = warped
    torch.manual_seed(1)
    model = bv.BetaVAE(bv.ModelConfig.for_data(data, latent_dim=2, architecture_options={
        "channels": 4, "hidden": 8, "dilations": "1"})).eval()
    assert model.decoder.uniform
    mu = np.random.default_rng(2).normal(0.0, 2.0, (len(side), 2))
    full = bv.decode(model, mu, sample=False).mean.double().numpy()
    assert full.std(axis=(1, 2)).max() < 1e-6 and full.mean(axis=(1, 2)).std() > 0.01
    by_square = np.array([full[i, :L, :L].mean() for i, L in enumerate(side)])
    np.testing.assert_allclose(readout.decoded_magnetization(model, mu, side), by_square,
                               atol=1e-6)


def test_a_model_conditioned_on_covariates_is_read_with_them(warped):
    """A decoder conditioned on the data's covariates (here a temperature column) is read
    with those covariates: equal to the site mean of the full decode given them, and not
    what the same codes decode to at another temperature."""
    data, control, side = configurations()
    data.covariates = torch.as_tensor(control[:, None], dtype=torch.float32)
    torch.manual_seed(3)
    model = bv.BetaVAE(bv.ModelConfig.for_data(data, latent_dim=2, architecture_options={
        "channels": 4, "hidden": 8, "dilations": "1"})).eval()
    mu = np.random.default_rng(4).normal(0.0, 2.0, (len(side), 2))
    full = bv.decode(model, mu, covariates=data.covariates, sample=False).mean.double()
    by_square = np.array([full[i, :L, :L].mean().item() for i, L in enumerate(side)])
    got = readout.decoded_magnetization(model, mu, side, data.covariates)
    np.testing.assert_allclose(got, by_square, atol=1e-6)
    hotter = readout.decoded_magnetization(model, mu, side, data.covariates + 1.0)
    assert np.abs(hotter - got).max() > 1e-3
    with pytest.raises(DataError, match="covariates has 3 rows for 320 posterior means"):
        readout.decoded_magnetization(model, mu, side, data.covariates[:3])
