"""The hooks betavae calls: each registers one typed record describing a DNA thing.

This is the module the `betavae` entry point names (`dna = "betavae_dna.plugin"`).
Records only describe; the functions they carry are `betavae_core.lazy` callables that
import their module (and numpy, torch) only when a user trains on `motifs` or a FASTA
file, or evaluates a run. So loading this module costs nothing, and `betavae --help`
stays fast for everybody.
"""

from __future__ import annotations

from betavae_core import (
    Dataset,
    Evaluation,
    LikelihoodSpec,
    Loader,
    Register,
    hookimpl,
    lazy,
)

DOMAIN = "dna"
# The cAMP response element: a palindrome with 50% GC, so planting it does not shift
# a sequence's GC content on average and the two factors stay separate.
MOTIF = "TGACGTCA"


@hookimpl
def register_datasets(register: Register) -> None:
    register(Dataset(
        name="motifs", domain=DOMAIN, load=lazy("betavae_dna.loaders:load_motifs"),
        has_factors=True, options={"n": 3000, "length": 40, "seed": 0},
        defaults={"latent_dim": 6, "epochs": 30},
        help=f"Random DNA with varying GC content; half carry the motif {MOTIF} at a "
             f"random position.",
    ))


@hookimpl
def register_loaders(register: Register) -> None:
    register(Loader(
        name="fasta", domain=DOMAIN, claims=lazy("betavae_dna.sequences:looks_like_fasta"),
        load=lazy("betavae_dna.loaders:load_fasta"), defaults={"latent_dim": 6},
        help="FASTA file of equal-length A/C/G/T sequences, one-hot encoded (n, L, 4).",
    ))


@hookimpl
def register_likelihoods(register: Register) -> None:
    register(LikelihoodSpec(
        name="categorical", domain="*", build=lazy("betavae_dna.likelihood:OneHotCategorical"),
        help="One-hot categorical over the last axis (letters) at every position.",
    ))


def is_dna(data) -> bool:
    """Items must be (positions, 4) one-hot arrays."""
    return len(data.event_shape) == 2 and data.event_shape[-1] == 4


@hookimpl
def register_evaluations(register: Register) -> None:
    register(Evaluation(
        name="dna_reconstruction", domain=DOMAIN,
        evaluate=lazy("betavae_dna.evaluation:dna_reconstruction"), applies=is_dna,
        options={"batch_size": 1024},
        help="Per-position base accuracy of the decoded argmax; best |r| latent vs GC.",
    ))
