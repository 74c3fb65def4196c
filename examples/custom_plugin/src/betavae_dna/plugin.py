"""The hooks betavae calls: each registers one typed record describing a DNA thing.

This is the module the `betavae` entry point names (`dna = "betavae_dna.plugin"`).
Records only describe; the functions they carry run later, when a user trains on
`motifs` or a FASTA file, or evaluates a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from betavae_core import (
    Dataset,
    DomainData,
    Evaluation,
    LikelihoodSpec,
    Loader,
    hookimpl,
)
from betavae_core.hookspecs import Register

from .evaluation import dna_reconstruction, is_dna
from .likelihood import OneHotCategorical
from .sequences import (
    ALPHABET,
    MOTIF,
    encode_records,
    looks_like_fasta,
    make_motifs,
    one_hot,
    read_fasta,
)

DOMAIN = "dna"


def _dna_data(x: np.ndarray, **fields: Any) -> DomainData:
    """DomainData with what every DNA set shares: its domain, likelihood and generator."""
    return DomainData(x=x, domain=DOMAIN, likelihood="categorical", generator="arrays",
                      **fields)


def load_motifs(n: int = 3000, length: int = 40, seed: int = 0) -> DomainData:
    """The synthetic motif set as DomainData, with its three ground-truth factors."""
    motifs = make_motifs(n=n, length=length, seed=seed)
    return _dna_data(
        motifs.x,
        factors=motifs.factors,
        factor_names=motifs.factor_names,
        factor_discrete=motifs.factor_discrete,
        metadata={"motif_present": motifs.factors[:, 2].astype(bool)},
        attrs={"source": "betavae_dna.motifs", "alphabet": ALPHABET, "motif": MOTIF,
               "n": int(n), "length": int(length), "seed": int(seed)},
    )


def load_fasta(path: Path) -> DomainData:
    """Equal-length A/C/G/T sequences from a FASTA file as one-hot (n, L, 4)."""
    path = Path(path)
    records = read_fasta(path)
    codes = encode_records(path, records)
    return _dna_data(
        one_hot(codes),
        metadata={"name": [r.name for r in records]},
        attrs={"source": str(path), "alphabet": ALPHABET, "length": int(codes.shape[1])},
    )


@hookimpl
def register_datasets(register: Register) -> None:
    register(Dataset(
        name="motifs", domain=DOMAIN, load=load_motifs, has_factors=True,
        options={"n": 3000, "length": 40, "seed": 0},
        help=f"Random DNA with varying GC content; half carry the motif {MOTIF} at a "
             f"random position.",
    ))


@hookimpl
def register_loaders(register: Register) -> None:
    register(Loader(
        name="fasta", domain=DOMAIN, claims=looks_like_fasta, load=load_fasta,
        help="FASTA file of equal-length A/C/G/T sequences, one-hot encoded (n, L, 4).",
    ))


@hookimpl
def register_likelihoods(register: Register) -> None:
    register(LikelihoodSpec(
        name="categorical", domain="*", build=OneHotCategorical,
        help="One-hot categorical over the last axis (letters) at every position.",
    ))


@hookimpl
def register_evaluations(register: Register) -> None:
    register(Evaluation(
        name="dna_reconstruction", domain=DOMAIN, evaluate=dna_reconstruction,
        applies=is_dna,
        help="Per-position base accuracy of the decoded argmax; best |r| latent vs GC.",
    ))
