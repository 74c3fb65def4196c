"""One model for several lattice sizes: padded items, a fully convolutional encoder with
global pooling, a spatial-broadcast decoder and a spin likelihood that skips padding.

The core stacks items into one (n, Lmax, Lmax) tensor, so configurations of side
L < Lmax sit in the top-left corner and the rest is 0 (never a spin value): `pad` builds
such data and `sides` reads each item's L back from it. The encoder reads L with
`extents` (the last column holding a value), which also holds for unpadded data of one
size with real values (phi^4), so one encoder can be trained at one L and read at any
other, one size per tensor. The encoder groups a minibatch
by L, crops each group to L x L, runs circular convolutions on that torus and averages
the features over its sites, so the latent is an intensive quantity that means the same
at every L. The decoder broadcasts z over an Lmax x Lmax torus and refines it with
circular convolutions; `spin_padded` scores only the sites inside each item's L x L
square (padding contributes nothing) and draws 0 there.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from betavae_core import ArchitectureRequest, ConfigError, DataError, EncoderOutput, Likelihood

from .lattice import lattice_size
from .plugin import LATTICE_FCN_DILATIONS

PAD = 0.0


def pad(configs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack (n_k, L_k, L_k) spin arrays of several sizes into (n, Lmax, Lmax) with PAD
    outside each item's square; returns the stack and L per item."""
    sides = [int(c.shape[-1]) for c in configs]
    top = max(sides)
    out = np.full((sum(len(c) for c in configs), top, top), PAD, dtype=np.float32)
    start = 0
    for c, L in zip(configs, sides, strict=True):
        out[start:start + len(c), :L, :L] = c
        start += len(c)
    return out, np.repeat(sides, [len(c) for c in configs])


def sides(x: torch.Tensor) -> torch.Tensor:
    """L of each padded item: the number of non-padding sites in its first row."""
    return (x[:, 0, :] != PAD).sum(dim=1)


def extents(x: torch.Tensor) -> torch.Tensor:
    """L of each item as the encoder reads it: one past the last column holding a
    non-padding value. Exact for padded spins; for unpadded data of one size (a real
    field such as phi^4, where 0 is a valid value but a whole column of exact zeros is
    not a configuration one samples) it is the full side."""
    used = (x != PAD).any(dim=1)  # (n, top): columns with any value
    idx = torch.arange(1, x.shape[-1] + 1, device=x.device)
    return (used * idx).amax(dim=1)


def valid_mask(L: torch.Tensor, top: int) -> torch.Tensor:
    """(n, top, top) bool: True inside each item's L x L square."""
    idx = torch.arange(top, device=L.device)
    inside = idx[None, :] < L[:, None]
    return inside[:, :, None] & inside[:, None, :]


def _conv(c_in: int, c_out: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation,
                     padding_mode="circular")


#: What runs saved without the `dilations` option were built with (a 15 x 15 patch);
#: the plugin record declares the same default.
DILATIONS = LATTICE_FCN_DILATIONS


def receptive_field(dilations: tuple[int, ...]) -> int:
    """Side of the patch one output site of the 3 x 3 conv stack sees: 1 + 2 sum(d)."""
    return 1 + 2 * sum(dilations)


def parse_dilations(value: str | int | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """The `dilations` option (a list, one int or "1,1,1") as a tuple of ints >= 1."""
    items = value.split(",") if isinstance(value, str) else (
        list(value) if isinstance(value, (list, tuple)) else [value])
    try:
        out = tuple(int(str(v).strip()) for v in items)
    except ValueError:
        out = ()
    if not out or min(out) < 1:
        raise ConfigError(f"lattice_fcn option dilations={value!r} must be one or more "
                          f"integers >= 1, one per conv layer; e.g. dilations=1,1,1.")
    return out


class PooledEncoder(nn.Module):
    """Per L group: circular 3 x 3 convs (one per dilation; 1, 2, 4 by default) on the
    L x L torus, then the mean and the mean square of each feature over the sites ->
    (mu, logvar). A lattice narrower than the convs' receptive field gets a warning: a
    feature then sees sites twice around the torus, a function of the global state
    rather than a local one, and so means something else at each L.

    head "mlp": both through a dense layer. head "linear": mu is an affine map of the
    pooled site averages (nothing nonlinear after the pooling), so z is a site average
    as m is and its moments scale with L as m's do; logvar keeps the dense layer."""

    def __init__(self, request: ArchitectureRequest, channels: int, hidden: int,
                 head: str = "mlp", dilations: tuple[int, ...] = DILATIONS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, d in enumerate(dilations):
            layers += [_conv(1 if i == 0 else channels, channels, d), nn.SiLU()]
        self.convs = nn.Sequential(*layers)
        self.dilations = tuple(dilations)
        self.field = receptive_field(self.dilations)
        self._warned = False
        pooled = 2 * channels + request.covariate_dim
        self.dense = nn.Sequential(nn.Linear(pooled, hidden), nn.SiLU())
        self.linear = head == "linear"
        if self.linear:
            self.mu = nn.Linear(pooled, request.latent_dim)
            self.logvar = nn.Linear(hidden, request.latent_dim)
        else:  # the module names of runs saved before the option existed
            self.head = nn.Linear(hidden, 2 * request.latent_dim)
        self.channels = channels

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 2 channels): site means of the features and of their squares, per item."""
        L = extents(x)
        out = x.new_zeros(x.shape[0], 2 * self.channels)
        groups = torch.unique(L).tolist()
        self.check_sides(groups)
        for side in groups:
            rows = torch.nonzero(L == side).flatten()
            h = self.convs(x[rows, None, :side, :side])
            out[rows] = torch.cat([h.mean(dim=(2, 3)), (h * h).mean(dim=(2, 3))], dim=1)
        return out

    def check_sides(self, sides: list[int]) -> None:
        """Warn, naming the receptive field and the smallest L, when a lattice is narrower
        than the field (a warning, not an error: runs fitted that way keep working);
        once per encoder, not once per minibatch."""
        if sides and min(sides) < self.field and not self._warned:
            self._warned = True
            warnings.warn(
                f"lattice_fcn with dilations {','.join(map(str, self.dilations))} sees a "
                f"{self.field} x {self.field} patch, wider than the smallest lattice in the "
                f"data (L = {min(sides)}; sizes {sorted(sides)}), so its features wrap "
                f"around the torus. Set dilations=1,1,1 (a 7 x 7 patch) or use sizes "
                f">= {self.field}.", UserWarning, stacklevel=3)

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> EncoderOutput:
        p = self.pooled(x)
        if covariates is not None:
            p = torch.cat([p, covariates], dim=1)
        h = self.dense(p)
        if self.linear:
            return EncoderOutput(self.mu(p), self.logvar(h), h)
        mu, logvar = self.head(h).chunk(2, dim=1)
        return EncoderOutput(mu, logvar, h)


class BroadcastDecoder(nn.Module):
    """z -> dense -> a feature vector broadcast over the Lmax x Lmax torus -> circular
    convs -> (n, params_per_element, Lmax, Lmax); translation invariant, so the square
    of any L inside it is decoded alike. A broadcast constant through circular convs
    stays constant: every site gets the same parameters (`uniform`), so `side=` may
    decode on a smaller torus (e.g. 4 x 4) and give the same per-site values, cheaply."""

    uniform = True

    def __init__(self, request: ArchitectureRequest, channels: int, hidden: int) -> None:
        super().__init__()
        self.top = request.event_shape[0]
        self.dense = nn.Sequential(nn.Linear(request.latent_dim + request.covariate_dim, hidden),
                                   nn.SiLU(), nn.Linear(hidden, channels), nn.SiLU())
        self.convs = nn.Sequential(_conv(channels, channels), nn.SiLU(),
                                   _conv(channels, request.params_per_element))

    def forward(self, z: torch.Tensor, covariates: torch.Tensor | None = None,
                skip: torch.Tensor | None = None, side: int | None = None) -> torch.Tensor:
        top = self.top if side is None else int(side)
        h = z if covariates is None else torch.cat([z, covariates], dim=1)
        h = self.dense(h)[:, :, None, None].expand(-1, -1, top, top)
        return self.convs(h.contiguous())


HEADS = ("mlp", "linear")


def build_lattice_fcn(request: ArchitectureRequest) -> tuple[nn.Module, nn.Module]:
    """Encoder and decoder for padded spin items of several sizes; `request.options` may
    set `channels` (default 16), `hidden` (default 64), `head` ("mlp", the default and
    what runs saved without the option hold, or "linear": mu affine in the site
    averages) and `dilations` (one per encoder conv layer; default 1,2,4, what runs
    saved without the option hold: a 15 x 15 receptive field; 1,1,1 sees 7 x 7)."""
    channels = int(request.options.get("channels", 16))
    hidden = int(request.options.get("hidden", 64))
    head = request.options.get("head", "mlp")
    dilations = parse_dilations(request.options.get("dilations", DILATIONS))
    if channels < 1 or hidden < 1:
        raise ConfigError(f"channels and hidden must be >= 1; got {channels}, {hidden}.")
    if head not in HEADS:
        raise ConfigError(f"lattice_fcn option head={head!r} is not one of {HEADS}; set "
                          f"head=mlp or head=linear.")
    lattice_size(request.event_shape)
    return (PooledEncoder(request, channels, hidden, head, dilations),
            BroadcastDecoder(request, channels, hidden))


class PaddedSpinField:
    """Independent +-1 spins inside each item's square; padding has probability one."""

    def __init__(self, logits: torch.Tensor, mask: torch.Tensor | None) -> None:
        self.logits, self.mask = logits, mask

    def _mask_for(self, x: torch.Tensor) -> torch.Tensor:
        return valid_mask(sides(x), x.shape[-1]) if self.mask is None else self.mask

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        terms = F.logsigmoid(x * self.logits) * self._mask_for(x)
        return terms.flatten(1).sum(dim=1)

    @property
    def mean(self) -> torch.Tensor:
        m = torch.tanh(0.5 * self.logits)
        return m if self.mask is None else m * self.mask

    def sample(self) -> torch.Tensor:
        with torch.no_grad():
            s = torch.where(torch.rand_like(self.logits) < torch.sigmoid(self.logits), 1.0, -1.0)
            return s if self.mask is None else s * self.mask


class PaddedSpin(Likelihood):
    """Factorised Bernoulli on +-1 spins of several sizes, padded with 0 to one side.

    Context "L" (one per item, as `multisize` datasets carry it) gives each item's side
    for sampling; without it, log_prob reads L from the data and samples fill Lmax."""

    params_per_element = 1

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__(event_shape)
        lattice_size(self.event_shape)

    def check_data(self, x: torch.Tensor) -> None:
        super().check_data(x)
        L = sides(x)
        inside = valid_mask(L, x.shape[-1])
        bad = torch.where(inside, (x != 1) & (x != -1), x != PAD)
        if bad.any():
            item = int(torch.nonzero(bad.flatten(1).any(dim=1))[0, 0])
            raise DataError(
                f"spin_padded needs +-1 spins in the top-left L x L square of each item and "
                f"0 elsewhere; item {item} (L = {int(L[item])} from its first row) breaks "
                f"this ({int(bad[item].sum())} bad sites). Pad with "
                f"betavae_fields.multisize.pad.")

    def distribution(self, params, context=None) -> PaddedSpinField:
        logits = params[:, 0]
        mask = None
        if context and "L" in context:
            mask = valid_mask(context["L"].to(logits.device).long(), logits.shape[-1])
        return PaddedSpinField(logits, mask)


def several_sizes(data) -> bool:
    """Whether the data holds configurations of two or more lattice sizes (metadata L)."""
    return "L" in data.metadata and len(np.unique(np.asarray(data.metadata["L"]))) > 1


def one_size(data) -> bool:
    """The opposite of `several_sizes`: evaluations of one L run on such data only."""
    return not several_sizes(data)
