"""Where generated crystals come from in latent space: the model's prior, the standard
normal, or the aggregate posterior of the training structures.

Three sources (`latent=`): "prior" draws from the model's own prior
(`model.sample_prior`: N(0, I), or the learned mixture of a `prior="mog"` model, saved
with its weights); "normal" draws z ~ N(0, I) whatever the model's prior (CDVAE's
generation protocol); "posterior" draws from a mixture fitted after training to the
training encodings (below).

At the small beta crystals need (0.05), the training encodings spread wider than the
N(0, I) prior (posterior-mean s.d. ~2 per dimension on Perov-5) and leave most of the
prior's mass in between: prior draws decoded there give atoms closer than 0.5 A for
~15 % of Perov-5 samples. Drawing instead from a Gaussian mixture fitted to the training
posterior means ("ex-post density estimation", Ghosh et al. 2020) puts the draws where
the decoder was trained: 99.8 % structurally valid on Perov-5. CDVAE reaches the same end
with 5,000 Langevin steps of a score network per sample; a mixture draw costs nothing.

Fitting the mixture (50 full-covariance components by EM) is the fixed cost of the
draws (seconds, whatever their number), so the fitted mixture is kept in the run folder
(`latent_mixture_<key>.npz`, the key a hash of the encodings, components and seed) and
reused: the same mixture gives the same draws.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from betavae_core import ConfigError, atomic_write

SOURCES = ("posterior", "prior", "normal")
DEFAULT_COMPONENTS = 50


def n_components(n_means: int, components: int) -> int:
    """Mixture components for `n_means` encodings: at most one per ten of them."""
    return max(1, min(int(components), n_means // 10))


def fitted_mixture(means: np.ndarray, seed: int = 0, components: int = DEFAULT_COMPONENTS,
                   cache_dir: str | Path | None = None) -> Any:
    """The Gaussian mixture over the posterior `means` (sklearn), read from `cache_dir`
    when it was fitted there before, else fitted (and kept there when it is writable)."""
    from sklearn.mixture import GaussianMixture

    if int(components) < 1:
        raise ConfigError(f"latent_components must be >= 1; got {components}.")
    k = n_components(len(means), components)
    mixture = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed)
    means = np.ascontiguousarray(means, dtype=np.float64)
    key = hashlib.sha256(means.tobytes() + f"{means.shape} {k} {seed}".encode()).hexdigest()
    path = Path(cache_dir) / f"latent_mixture_{key[:16]}.npz" if cache_dir else None
    fields = ("weights_", "means_", "covariances_", "precisions_cholesky_")
    if path is not None and path.exists():
        with np.load(path) as saved:
            for name in fields:
                setattr(mixture, name, saved[name])
        mixture.converged_, mixture.n_iter_ = True, 0
        return mixture
    mixture.fit(means)
    if path is not None:
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a handle: np.savez would append .npz to a path
                np.savez(fh, **{name: getattr(mixture, name) for name in fields})

        try:
            atomic_write(path, save)
        except OSError:  # a read-only run folder (FolderAccessError): fit again next time
            pass
    return mixture


def mixture_draws(means: np.ndarray, n: int, seed: int = 0,
                  components: int = DEFAULT_COMPONENTS,
                  cache_dir: str | Path | None = None) -> torch.Tensor:
    """n latent codes from a full-covariance Gaussian mixture fitted to the training
    structures' posterior means (fewer components when there are few structures)."""
    draws, _ = fitted_mixture(means, seed, components, cache_dir).sample(int(n))
    order = np.random.default_rng(seed).permutation(int(n))  # sample() groups by component
    return torch.as_tensor(draws[order], dtype=torch.float32)


def latent_draws(model: Any, n: int, source: str, means: np.ndarray | None,
                 generator: torch.Generator, seed: int,
                 components: int = DEFAULT_COMPONENTS,
                 cache_dir: str | Path | None = None) -> tuple[torch.Tensor, str]:
    """(n latent codes, where they came from): from the mixture over the training
    posterior `means`, from the model's prior (asked for, or when `means` is None: no
    training structures are known) or from N(0, I) ("normal"), with `generator`. The
    mixture is kept in (and read from) `cache_dir`, the run folder, when given."""
    if source not in SOURCES:
        raise ConfigError(f"latent must be one of {SOURCES}; got {source!r}.")
    if source == "posterior" and means is not None:
        z = mixture_draws(means, n, seed, components, cache_dir)
        return z, (f"Gaussian mixture ({n_components(len(means), components)} components) "
                   f"fitted to the training posterior means")
    if source == "normal":
        return torch.randn(int(n), model.latent_dim, generator=generator), "N(0, I)"
    z = model.sample_prior(int(n), generator=generator).cpu()
    name = prior_name(model)
    if source == "prior":
        return z, name
    return z, f"{name} (no training structures known to fit the posterior mixture)"


def prior_name(model: Any) -> str:
    """How the model's prior reads in a report: "prior N(0, I)", or the learned one."""
    prior = getattr(model.config, "prior", "isotropic")
    if prior == "isotropic" and not getattr(model.config, "learn_prior", False):
        return "prior N(0, I)"
    options = getattr(model.config, "prior_options", None) or {}
    shown = ", ".join(f"{k} {v}" for k, v in options.items())
    return f"learned prior {prior}" + (f" ({shown})" if shown else "")
