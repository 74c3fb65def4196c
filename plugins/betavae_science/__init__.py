"""betavae-science: the research harness of betavae as a plugin.

Disentanglement and identifiability metrics on plain arrays (`metrics`: MIG, DCI, SAP,
FactorVAE score, MCC), the `disentanglement` evaluation that scores a fitted run's
posterior means against ground-truth factors (`evaluations`), and the experiments behind
"β is the price of information" (`experiments`, run with `betavae experiment NAME`).
The hooks live in `betavae_science.plugin`.

Importing this package is cheap: the names below load their module on first use.
"""

from __future__ import annotations

from betavae_core import lazy_exports

# name -> module (relative to this package) that defines it; imported on first access.
_LAZY = {
    "mig": "metrics", "dci": "metrics", "sap": "metrics", "factorvae_score": "metrics",
    "mcc": "metrics",
    "factor_metrics": "evaluations",
    "EXPERIMENTS": "experiments", "run_experiment": "experiments",
    "ExperimentResult": "experiments",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_exports(__name__, _LAZY)
