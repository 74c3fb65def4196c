"""The hooks betavae_science implements: the entry point `science` points here.

It registers the `disentanglement` evaluation (MIG, DCI, SAP, FactorVAE score and MCC
against ground-truth factors, for any domain), the `ivae_mlp` architecture (the MLP
with the covariates kept out of the decoder, for a conditional prior) and adds the
`betavae experiment` subcommand. Loading it is cheap: scikit-learn is only looked for,
not imported, and the evaluation and the command import their modules when they run.
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
def register_architectures(register: bv.Register) -> None:
    register(bv.Architecture(
        name="ivae_mlp", domain="*", build=bv.lazy("betavae_science.architectures:"
                                                   "build_ivae_mlp"),
        options={"hidden": [256, 128]},
        help="MLP whose decoder does not see the covariates (iVAE, with --prior "
             "conditional).",
    ))


@bv.hookimpl
def register_commands(cli: Any) -> None:
    from .cli import experiment

    cli.add_command(experiment)
