"""The markdown table every single-cell benchmark prints (columns padded to align)."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table of `rows` (strings) under `header`, each column as wide as its
    widest cell, so the printed text reads as a table and pastes into a README."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in rows]
    return "\n".join([line, rule, *body])
