"""DNA sequences as arrays: one-hot encoding, a FASTA reader and a synthetic motif set.

Everything here is numpy; `plugin.py` wraps the results in `DomainData`. A sequence of
length L becomes a float array of shape (L, 4) with exactly one 1 per row, columns in
the order of `ALPHABET`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from betavae_core import DataError

from .plugin import MOTIF

ALPHABET = "ACGT"
GC_COLUMNS = (ALPHABET.index("C"), ALPHABET.index("G"))
PEEK_BYTES = 4096

_CODE = np.full(256, -1, dtype=np.int8)
for _i, _base in enumerate(ALPHABET):
    _CODE[ord(_base)] = _i
    _CODE[ord(_base.lower())] = _i  # soft-masked (lower-case) bases are the same base


def encode(sequence: str) -> np.ndarray:
    """Integer codes 0..3 of an A/C/G/T string (lower case allowed); -1 marks any other
    letter, so callers can report where it is."""
    raw = np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)
    return _CODE[raw]


def one_hot(codes: np.ndarray) -> np.ndarray:
    """Integer codes (..., L) -> float32 one-hot (..., L, 4)."""
    return np.eye(len(ALPHABET), dtype=np.float32)[np.asarray(codes, dtype=np.int64)]


def to_strings(x: np.ndarray | Sequence[Sequence[Sequence[float]]]) -> list[str]:
    """One-hot (or probabilities) (n, L, 4) -> strings, taking the most likely base."""
    letters = np.array(list(ALPHABET))
    return ["".join(row) for row in letters[np.asarray(x).argmax(axis=-1)]]


def gc_fraction(x: np.ndarray) -> np.ndarray:
    """Fraction of G or C per sequence, from one-hot (n, L, 4) -> (n,)."""
    x = np.asarray(x)
    return x[..., list(GC_COLUMNS)].sum(axis=(-1, -2)) / x.shape[-2]


# --- FASTA -----------------------------------------------------------------------------
def looks_like_fasta(path: Path) -> bool:
    """True when the first non-blank line of `path` starts with '>' (';' comment lines,
    which `read_fasta` skips too, are passed over).

    Reads at most PEEK_BYTES, so it is cheap on large files, and returns False instead of
    raising (missing file, folder, binary content, no permission).
    """
    try:
        path = Path(path)
        if not path.is_file():
            return False
        with path.open("rb") as fh:
            head = fh.read(PEEK_BYTES)
        text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith(";"):
                return line.startswith(">")
    except Exception:
        return False
    return False


@dataclass
class FastaRecord:
    """One record: its name (first word of the header), its sequence and the line it
    starts on (1-based, the header line), for error messages."""

    name: str
    sequence: str
    line: int


def read_fasta(path: Path) -> list[FastaRecord]:
    """Parse a FASTA file: '>' headers, sequences possibly wrapped over several lines.

    Blank lines and ';' comment lines are skipped. Raises `DataError` naming the file
    (and line) when there is text before the first header, a record without sequence,
    or no record at all.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text FASTA file (byte {exc.start} is not UTF-8).") \
            from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}).") from None
    records: list[FastaRecord] = []
    chunks: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            _close(path, records, chunks)
            header = line[1:].split()
            name = header[0] if header else f"record_{len(records) + 1}"
            records.append(FastaRecord(name, "", number))
            chunks = []
        elif not records:
            raise DataError(f"{path}, line {number}: sequence text before the first '>' "
                            f"header; is this a FASTA file?")
        else:
            chunks.append("".join(line.split()))
    _close(path, records, chunks)
    if not records:
        raise DataError(f"{path}: no FASTA records (no line starting with '>').")
    return records


def _close(path: Path, records: list[FastaRecord], chunks: list[str]) -> None:
    """Attach the collected sequence lines to the last record; refuse an empty one."""
    if not records:
        return
    record = records[-1]
    record.sequence = "".join(chunks)
    if not record.sequence:
        raise DataError(f"{path}: record {record.name!r} (line {record.line}) has no "
                        f"sequence.")


def encode_records(path: Path, records: Iterable[FastaRecord]) -> np.ndarray:
    """Integer codes (n, L) of equal-length A/C/G/T records.

    Raises `DataError` naming the file, the record and the 1-based position of the first
    letter outside A/C/G/T (N, IUPAC codes, gaps), or the first record whose length
    differs from the first record's.
    """
    rows: list[np.ndarray] = []
    first: FastaRecord | None = None
    for record in records:
        if first is None:
            first = record
        elif len(record.sequence) != len(first.sequence):
            raise DataError(
                f"{path}: record {record.name!r} (line {record.line}) has length "
                f"{len(record.sequence)}, but the first record {first.name!r} has length "
                f"{len(first.sequence)}; every sequence must have the same length "
                f"(trim or pad them to one length first)."
            )
        codes = encode(record.sequence)
        bad = np.flatnonzero(codes < 0)
        if bad.size:
            pos = int(bad[0])
            raise DataError(
                f"{path}: record {record.name!r} (line {record.line}) holds "
                f"{record.sequence[pos]!r} at position {pos + 1}; only A, C, G and T are "
                f"allowed ({bad.size} non-ACGT letters in this record). Remove or replace "
                f"ambiguous bases first."
            )
        rows.append(codes)
    if not rows:
        raise DataError(f"{path}: no FASTA records.")
    return np.stack(rows)


# --- the synthetic motif set ---------------------------------------------------------
@dataclass
class MotifSet:
    """Generated sequences with their ground truth.

    `codes` is (n, L) in 0..3; `factors` is (n, 3): motif position (start, 0-based; -1
    when no motif was planted), GC fraction of the whole sequence, motif present (0/1).
    The position is marked continuous: it is ordinal, and with dozens of values a
    classifier over a held-out split of a few hundred items would be meaningless.
    """

    codes: np.ndarray
    factors: np.ndarray
    factor_names: tuple[str, ...] = ("motif_position", "gc_fraction", "motif_present")
    factor_discrete: tuple[bool, ...] = (False, False, True)

    @property
    def x(self) -> np.ndarray:
        return one_hot(self.codes)


def make_motifs(n: int = 3000, length: int = 40, seed: int = 0,
                motif: str = MOTIF) -> MotifSet:
    """Random sequences with a varying GC content, half of them carrying `motif`.

    Each sequence draws a target GC probability uniformly from [0.2, 0.8] and samples
    every base independently from it; then, with probability 1/2, `motif` is written at
    a uniformly random start. The same (n, length, seed) always gives the same data.
    """
    n, length = int(n), int(length)
    motif_codes = encode(motif)
    if n < 1:
        raise DataError(f"motifs: n must be >= 1; got {n}.")
    if (motif_codes < 0).any() or not motif:
        raise DataError(f"motifs: the motif {motif!r} must be a non-empty A/C/G/T string.")
    if length < len(motif):
        raise DataError(f"motifs: length must be at least the motif's length "
                        f"{len(motif)}; got {length}.")
    rng = np.random.default_rng(int(seed))
    gc = rng.uniform(0.2, 0.8, size=n)
    probs = np.stack([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2], axis=1)  # A C G T
    cumulative = np.cumsum(probs, axis=1)
    u = rng.random((n, length))
    codes = (u[:, :, None] > cumulative[:, None, :]).sum(axis=2).clip(0, 3).astype(np.int8)
    present = rng.random(n) < 0.5
    start = rng.integers(0, length - len(motif) + 1, size=n)
    rows = np.flatnonzero(present)
    cols = start[rows, None] + np.arange(len(motif))
    codes[rows[:, None], cols] = motif_codes
    factors = np.stack([
        np.where(present, start, -1).astype(np.float64),
        np.isin(codes, GC_COLUMNS).mean(axis=1),
        present.astype(np.float64),
    ], axis=1)
    return MotifSet(codes=codes, factors=factors)
