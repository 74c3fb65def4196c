"""Core evaluations: rate/distortion, posterior statistics and, for images,
reconstructions and traversals. Each receives the run (`RunContext`)."""

from __future__ import annotations

import numpy as np
import torch

from betavae_core import information, plots
from betavae_core.context import RunContext
from betavae_core.posterior import decode, encode, evaluate_terms, reconstruct
from betavae_core.results import EvaluationResult

ACTIVE_THRESHOLD = 0.01


def rate_distortion(run: RunContext) -> EvaluationResult:
    """Held-out rate, distortion, ELBO and KL per dimension (one z sample per item)."""
    terms = evaluate_terms(run.model, run.heldout, seed=run.seed)
    return EvaluationResult(
        metrics={**terms.as_dict(), "n_items": terms.n_items},
        figures={"kl_per_dim": plots.kl_per_dim(terms.kl_per_dim)},
    )


def posterior(run: RunContext, threshold: float = ACTIVE_THRESHOLD) -> EvaluationResult:
    """Active units, aggregate-posterior covariance, total correlation and I(X;Z)."""
    mu, logvar = encode(run.model, run.heldout)
    scale = run.model.prior_scale().detach().cpu().double().numpy()
    summary = information.posterior_summary(mu, logvar, prior_scale=scale,
                                            threshold=float(threshold), kl=_model_kl(run))
    cov = information.aggregate_covariance(mu, logvar)
    summary["aggregate_covariance"] = cov.tolist()
    summary["prior_scale"] = scale.tolist()
    fig = plots.correlation_heatmap(cov, "Aggregate posterior correlation")
    return EvaluationResult(metrics=summary, figures={"aggregate_correlation": fig})


def _model_kl(run: RunContext) -> np.ndarray | None:
    """The model's own KL per dimension where the prior is not N(0, diag(s^2)): a Monte
    Carlo estimate (laplace, student_t, mog) or a prior that depends on covariates
    (conditional). None for the Gaussian priors, whose closed form the summary uses."""
    if run.model.config.prior in ("isotropic", "anisotropic"):
        return None
    return evaluate_terms(run.model, run.heldout, seed=run.seed).kl_per_dim


@torch.no_grad()
def images(run: RunContext, n_show: int = 10) -> EvaluationResult:
    """Originals beside reconstructions, and traversals of the most informative latents."""
    model, shown = run.model, run.heldout.subset(np.arange(min(int(n_show), len(run.heldout))))
    x = shown.x.numpy()
    recon = reconstruct(model, shown).mean.numpy()
    recon_fig = plots.image_rows([x, recon], ["data", "reconstruction"],
                                 "Held-out items and their reconstructions (posterior mean)")
    mu, logvar = encode(model, shown)
    scale = model.prior_scale().detach().cpu().double().numpy()
    kl = information.kl_per_dim(mu, logvar, prior_scale=scale)
    dims = [int(d) for d in np.argsort(-kl) if kl[d] > ACTIVE_THRESHOLD][:8]
    figures = {"reconstructions": recon_fig}
    if dims:
        steps = np.linspace(-2.5, 2.5, 9)
        cov = shown.covariates
        rows = []
        for d in dims:
            z = np.repeat(mu[:1], len(steps), axis=0)
            z[:, d] = steps * scale[d]
            c = None if cov is None else cov[:1].repeat(len(steps), 1)
            rows.append(decode(model, z, covariates=c, sample=False).mean.numpy())
        figures["traversals"] = plots.image_rows(
            rows, [f"z{d} ({kl[d]:.1f} nats)" for d in dims],
            "Latent traversals (−2.5 to 2.5 prior s.d.), most informative first")
    return EvaluationResult(metrics={"n_shown": int(len(x)), "traversed_dims": dims},
                            figures=figures)
