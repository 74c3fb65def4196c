"""The hooks betavae_science implements: the entry point `science` points here.

It registers the `disentanglement` evaluation (MIG, DCI, SAP, FactorVAE score and MCC
against ground-truth factors, for any domain) and adds the `betavae experiment`
subcommand. Loading it is cheap: scikit-learn is only looked for, not imported, and the
evaluation and the command import their modules when they run.
"""

from __future__ import annotations

from typing import Any

import betavae_core as bv

bv.requires("sklearn", "threadpoolctl", extra="science")


@bv.hookimpl
def register_evaluations(register: bv.Register) -> None:
    register(bv.Evaluation(
        name="disentanglement", domain="*", requires_factors=True,
        evaluate=bv.lazy("betavae_science.evaluations:factor_metrics"),
        options={"max_items": 5000},
        help="MIG, DCI, SAP, FactorVAE score and MCC against ground-truth factors.",
    ))


@bv.hookimpl
def register_commands(cli: Any) -> None:
    from .cli import experiment

    cli.add_command(experiment)
