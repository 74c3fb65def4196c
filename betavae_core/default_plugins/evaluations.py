"""Core evaluations: rate/distortion, posterior statistics, disentanglement, images."""

from __future__ import annotations

import numpy as np
import torch

from betavae_core import disentanglement, information, plots
from betavae_core.data import DomainData
from betavae_core.hookspecs import hookimpl
from betavae_core.model import BetaVAE
from betavae_core.posterior import encode, evaluate_terms
from betavae_core.registry import Evaluation
from betavae_core.results import EvaluationResult

ACTIVE_THRESHOLD = 0.01
MAX_ITEMS_FOR_FACTOR_METRICS = 5000


def rate_distortion(model: BetaVAE, data: DomainData) -> EvaluationResult:
    """Held-out rate, distortion, ELBO and KL per dimension (one z sample per item)."""
    terms = evaluate_terms(model, data)
    return EvaluationResult(
        metrics={**terms.as_dict(), "n_items": terms.n_items},
        figures={"kl_per_dim": plots.kl_per_dim(terms.kl_per_dim)},
    )


def posterior(model: BetaVAE, data: DomainData) -> EvaluationResult:
    """Active units, aggregate-posterior covariance, total correlation and I(X;Z)."""
    mu, logvar = encode(model, data)
    scale = model.prior_scale().detach().cpu().double().numpy()
    summary = information.posterior_summary(mu, logvar, prior_scale=scale,
                                            threshold=ACTIVE_THRESHOLD)
    cov = information.aggregate_covariance(mu, logvar)
    summary["aggregate_covariance"] = cov.tolist()
    summary["prior_scale"] = scale.tolist()
    fig = plots.correlation_heatmap(cov, "Aggregate posterior correlation")
    return EvaluationResult(metrics=summary, figures={"aggregate_correlation": fig})


def factor_metrics(model: BetaVAE, data: DomainData) -> EvaluationResult:
    """MIG, DCI, SAP, FactorVAE score and MCC of the posterior means against the factors."""
    if len(data) > MAX_ITEMS_FOR_FACTOR_METRICS:
        keep = np.random.default_rng(0).choice(len(data), MAX_ITEMS_FOR_FACTOR_METRICS,
                                               replace=False)
        data = data.subset(np.sort(keep))
    mu, _ = encode(model, data)
    factors, discrete = data.factors, list(data.factor_discrete)
    metrics = {
        "factor_names": list(data.factor_names),
        "n_items": len(data),
        **_pick(disentanglement.mig(mu, factors, discrete=discrete), "mig", "mig_per_factor"),
        **_pick(disentanglement.dci(mu, factors, discrete=discrete),
                "disentanglement", "completeness", "informativeness"),
        **_pick(disentanglement.sap(mu, factors, discrete=discrete), "sap"),
        **_pick(disentanglement.factorvae_score(mu, factors, discrete=discrete),
                "factorvae_score"),
        "mcc": disentanglement.mcc(mu, factors)["mcc"],
    }
    return EvaluationResult(metrics=metrics)


def _pick(d: dict, *keys: str) -> dict:
    return {k: d[k] for k in keys}


def is_image(data: DomainData) -> bool:
    """Items are 2-D images when the data says so (`attrs["image"]`), not by shape alone:
    a (length, 4) one-hot sequence is 2-D too."""
    return bool(data.attrs.get("image")) and len(data.event_shape) == 2


@torch.no_grad()
def images(model: BetaVAE, data: DomainData, n_show: int = 10) -> EvaluationResult:
    """Originals beside reconstructions, and traversals of the most informative latents."""
    model.eval()
    x = data.x[:n_show].to(model.device)
    cov = None if data.covariates is None else data.covariates[:n_show].to(model.device)
    enc = model.encode(x, cov)
    recon = model.decode(enc.mu, cov, skip=enc.features).mean.cpu().numpy()
    recon_fig = plots.image_rows([x.cpu().numpy(), recon], ["data", "reconstruction"],
                                 "Held-out items and their reconstructions (posterior mean)")
    kl = model.kl_per_dim(enc.mu, enc.logvar).mean(0).cpu().numpy()
    dims = [int(d) for d in np.argsort(-kl) if kl[d] > ACTIVE_THRESHOLD][:8]
    figures = {"reconstructions": recon_fig}
    if dims:
        steps = torch.linspace(-2.5, 2.5, 9, device=model.device)
        scale = model.prior_scale()
        rows = []
        for d in dims:
            z = enc.mu[:1].repeat(len(steps), 1)
            z[:, d] = steps * scale[d]
            c = None if cov is None else cov[:1].repeat(len(steps), 1)
            rows.append(model.decode(z, c).mean.cpu().numpy())
        figures["traversals"] = plots.image_rows(
            rows, [f"z{d} ({kl[d]:.1f} nats)" for d in dims],
            "Latent traversals (−2.5 to 2.5 prior s.d.), most informative first")
    return EvaluationResult(metrics={"n_shown": int(len(x)), "traversed_dims": dims},
                            figures=figures)


@hookimpl
def register_evaluations(register):
    register(Evaluation(
        name="rate_distortion", domain="*", evaluate=rate_distortion,
        help="Held-out rate, distortion, ELBO and KL per latent dimension.",
    ))
    register(Evaluation(
        name="posterior", domain="*", evaluate=posterior,
        help="Active units, aggregate covariance, off-diagonal mass, TC and I(X;Z).",
    ))
    register(Evaluation(
        name="disentanglement", domain="*", evaluate=factor_metrics, requires_factors=True,
        help="MIG, DCI, SAP, FactorVAE score and MCC against ground-truth factors.",
    ))
    register(Evaluation(
        name="images", domain="*", evaluate=images, applies=is_image,
        help="Reconstructions and latent traversals, for items that are 2-D images.",
    ))
