"""The `disentanglement` evaluation: how well the posterior means line up with the data's
ground-truth factors (MIG, DCI, SAP, FactorVAE score, MCC).

It runs for any domain whose held-out data carries factors. The metrics fit forests and
stumps, so at most `max_items` held-out items (a seeded draw) are scored.
"""

from __future__ import annotations

from typing import Any

import betavae_core as bv

from . import metrics

MAX_ITEMS = 5000


def factor_metrics(run: bv.RunContext, max_items: int = MAX_ITEMS) -> bv.EvaluationResult:
    """MIG, DCI, SAP, FactorVAE score and MCC of the posterior means against the factors.

    Scores `run.heldout`, or a draw of `max_items` of its items seeded by `run.seed`; the
    metrics that fit predictors are seeded by `run.seed` too.
    """
    if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 2:
        raise bv.ConfigError(f"evaluation 'disentanglement': max_items must be an integer "
                             f">= 2, got {max_items!r}.")
    data = run.heldout
    if data is None or not data.has_factors:
        raise bv.DataError("evaluation 'disentanglement' needs held-out data with "
                           "ground-truth factors.")
    if len(data) > max_items:
        keep = run.numpy_rng().choice(len(data), max_items, replace=False)
        data = data.subset(sorted(int(i) for i in keep))
    mu, _ = bv.encode(run.model, data)
    factors, discrete, seed = data.factors, list(data.factor_discrete), run.seed
    scores = {
        "factor_names": list(data.factor_names),
        "n_items": len(data),
        **_pick(metrics.mig(mu, factors, discrete=discrete), "mig", "mig_per_factor"),
        **_pick(metrics.dci(mu, factors, seed=seed, discrete=discrete),
                "disentanglement", "completeness", "informativeness"),
        **_pick(metrics.sap(mu, factors, discrete=discrete, seed=seed), "sap"),
        **_pick(metrics.factorvae_score(mu, factors, discrete=discrete, seed=seed),
                "factorvae_score"),
        "mcc": metrics.mcc(mu, factors)["mcc"],
    }
    return bv.EvaluationResult(metrics=scores)


def _pick(scores: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: scores[k] for k in keys}
