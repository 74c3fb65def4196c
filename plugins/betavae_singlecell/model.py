"""`SingleCellModel`: a fitted β-VAE plus what a scanpy user needs to reuse it (gene
order, batch categories, library sizes, per-label latent clouds), saved as a run
directory that `betavae evaluate` / `betavae generate` read too."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import betavae_core as bv
from betavae_core import BetaVAE, CheckpointError

from .conversion import gene_columns
from .plugin import DOMAIN


@dataclass
class SingleCellModel:
    """A fitted model: the `BetaVAE`, its run description and the single-cell record.

    `config` is the run's `config.json` document (model, training, objective, and the
    data's attrs: `var_names`, `batches`, `batch_key`, `layer`, `library_log`). `record`
    holds the history, KL per latent dimension and latent clouds per label.
    """

    vae: BetaVAE
    config: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)
    adata: Any = field(default=None, repr=False)

    @property
    def attrs(self) -> dict[str, Any]:
        return self.config.get("data", {}).get("attrs", {})

    @property
    def var_names(self) -> list[str]:
        return list(self.attrs["var_names"])

    @property
    def batches(self) -> list[str]:
        return list(self.attrs.get("batches") or [])

    @property
    def batch_key(self) -> str | None:
        return self.attrs.get("batch_key")

    @property
    def layer(self) -> str | None:
        return self.attrs.get("layer")

    @property
    def likelihood(self) -> str:
        return self.vae.config.likelihood

    @property
    def n_latent(self) -> int:
        return self.vae.latent_dim

    def __repr__(self) -> str:
        batches = f", batches={self.batches}" if self.batches else ""
        return (f"SingleCellModel(likelihood={self.likelihood!r}, n_latent={self.n_latent}, "
                f"n_genes={len(self.var_names)}{batches})")

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the model to the folder `path` (weights, config.json, domain.json).

        A non-empty folder is refused unless `overwrite`, and even then only the files
        betavae wrote there (by its manifest, unchanged since) are replaced: a file of
        the user's, whatever its name, makes it refuse, naming the file. The folder is
        locked while it is written, and the three files appear together.
        """
        path = Path(path)
        with bv.output_folder(path, overwrite=overwrite,
                              purpose="SingleCellModel.save") as staged:
            bv.write_json(staged / bv.CONFIG, self.config)
            bv.save_weights(self.vae, staged / bv.WEIGHTS)
            bv.write_json(staged / bv.DOMAIN_RECORD, self.record)
        return path


def load(path: str | Path, adata: Any = None) -> SingleCellModel:
    """Load a model saved by `SingleCellModel.save` or a `betavae train` run directory.

    With `adata`, its genes are checked against the model's (a `DataError` lists the
    missing ones; extra genes are fine) and it becomes the model's default data.
    """
    run = bv.load_run(path)
    if run.config.get("data", {}).get("domain") != DOMAIN:
        raise CheckpointError(f"{path} holds a {run.config.get('data', {}).get('domain')!r} "
                              f"model, not a single-cell one.")
    domain_file = Path(path) / bv.DOMAIN_RECORD
    record = bv.read_json(domain_file) if domain_file.exists() else _record_from_run(run)
    model = SingleCellModel(run.model, run.config, record)
    if adata is not None:
        gene_columns(adata.var_names, model.var_names)
        model.adata = adata
    return model


def _record_from_run(run: Any) -> dict[str, Any]:
    """What a CLI run directory says about the fit (no label clouds)."""
    report_file = run.dir / bv.REPORT
    report = bv.read_json(report_file) if report_file.exists() else {}
    best = report.get("best") or {}
    return {"kl_per_dim": best.get("val_kl_per_dim", []), "report": report, "history": {},
            "label_clouds": {}}


def label_clouds(z: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, list]]:
    """Mean and covariance of the posterior means of each label's cells."""
    clouds = {}
    for label in sorted(set(labels)):
        zl = z[labels == label]
        cov = np.cov(zl, rowvar=False) if len(zl) > 1 else np.zeros((z.shape[1], z.shape[1]))
        clouds[str(label)] = {"mean": zl.mean(axis=0).tolist(),
                              "cov": np.atleast_2d(cov).tolist(), "n_cells": int(len(zl))}
    return clouds
