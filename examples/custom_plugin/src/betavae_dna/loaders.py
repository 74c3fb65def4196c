"""The DNA data sources: the synthetic motif set and a FASTA reader, as `DomainData`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from betavae_core import DomainData

from .plugin import DOMAIN
from .sequences import ALPHABET, MOTIF, encode_records, make_motifs, one_hot, read_fasta


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
