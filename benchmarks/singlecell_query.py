"""Query mapping: fit on one protocol, map the other, transfer the cell-line labels.

Ours: `bsc.tl.fit(reference, batch_key="batch")`, then `mapping.map_query` (scArches
surgery: only the new batch's parameters train, every reference weight frozen) and
`mapping.transfer_labels`. Anchor: scvi-tools `SCVI` fit on the reference with the
covariates given to the encoder (`encode_covariates=True`, layer norm, no batch norm: the
scArches tutorial's settings), then `SCVI.load_query_data(query, model)` + `train`
(weight decay 0, as the tutorial). Both: n_latent 10, one hidden layer of 128, batch size
128, the same epochs for the reference fit and for the query training, CPU, same threads.
A third row, "ours, untrained", is the surgery without query training (new columns at
zero): the floor that mapping has to beat.

Data: the CellBench mixture (CEL-seq2 and Drop-seq, three lung cancer cell lines), read
and reduced to 2,000 HVGs as `singlecell_integration.py` does. Both directions are run:
CEL-seq2 -> Drop-seq and Drop-seq -> CEL-seq2.

Measured, for every method the same way, on posterior means: label-transfer accuracy
of the query's cell lines (kNN, k = 15, votes weighted by 1 / distance:
`mapping.weighted_vote`), normalised iLISI of reference and query cells pooled (0 =
protocols apart, 1 = mixed; `betavae_singlecell.metrics.ilisi`), and wall seconds of
the reference fit and of the query mapping.

    python benchmarks/singlecell_query.py              # 200 epochs, seeds 0,1,2
    python benchmarks/singlecell_query.py --quick      # 50 epochs, seed 0
    python benchmarks/singlecell_query.py --defaults   # each method at its own defaults
    . /work/benchvenv/bin/activate && python benchmarks/singlecell_query.py   # with scVI
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
from _tables import table
from singlecell_integration import load_cellbench
from singlecell_vs_scvi import (
    fmt,
    int_list,
    machine_line,
    quiet_libraries,
    scvi_version,
    str_list,
)

DIRECTIONS = (("celseq2", "dropseq"), ("dropseq", "celseq2"))
K = 15


def transfer(z_ref: np.ndarray, labels: np.ndarray, z_query: np.ndarray) -> np.ndarray:
    """The same kNN vote for every method (`mapping.weighted_vote`)."""
    from sklearn.neighbors import NearestNeighbors

    from betavae_singlecell.mapping import weighted_vote

    distances, index = NearestNeighbors(n_neighbors=K).fit(z_ref).kneighbors(z_query)
    return weighted_vote(labels[index], distances)[0]


def ours(ref, query, epochs: int | None, query_epochs: int | None, seed: int,
         batch_size: int, train_query: bool = True) -> dict:
    """epochs None: `bsc.tl.fit` and `map_query` at their defaults (latent, epochs, β)."""
    import betavae_singlecell as bsc
    from betavae_singlecell import mapping

    ref, query = ref.copy(), query.copy()
    fixed = {} if epochs is None else {"n_latent": 10, "epochs": epochs,
                                       "batch_size": batch_size}
    start = time.perf_counter()
    model = bsc.tl.fit(ref, batch_key="batch", seed=seed, progress=False, **fixed)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    mapped = mapping.map_query(model, query, batch_key="batch", seed=seed,
                               epochs=query_epochs if train_query else 0,
                               batch_size=None if epochs is None else batch_size)
    map_s = time.perf_counter() - start
    z_ref = bsc.tl.encode(mapped, ref, key_added=None)
    return {"z_ref": z_ref, "z_query": np.asarray(query.obsm["X_betavae"]),
            "fit_s": fit_s, "map_s": map_s}


def scvi_query(ref, query, epochs: int | None, query_epochs: int | None, seed: int,
               batch_size: int) -> dict:
    """epochs None: scvi-tools' epoch heuristic for both trainings."""
    import scvi

    quiet_libraries()
    scvi.settings.verbosity = logging.ERROR
    scvi.settings.seed = seed
    ref, query = ref.copy(), query.copy()
    train = {"accelerator": "cpu", "devices": 1, "train_size": 0.9, "batch_size": batch_size,
             "early_stopping": False, "enable_progress_bar": False,
             "enable_model_summary": False, "logger": False}
    start = time.perf_counter()
    scvi.model.SCVI.setup_anndata(ref, batch_key="batch")
    model = scvi.model.SCVI(ref, n_latent=10, n_hidden=128, n_layers=1, dropout_rate=0.1,
                            encode_covariates=True, use_layer_norm="both",
                            use_batch_norm="none")
    model.train(max_epochs=epochs, **train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    q = scvi.model.SCVI.load_query_data(query, model)
    q.train(max_epochs=query_epochs, plan_kwargs={"weight_decay": 0.0}, **train)
    map_s = time.perf_counter() - start
    return {"z_ref": np.asarray(model.get_latent_representation()),
            "z_query": np.asarray(q.get_latent_representation()),
            "fit_s": fit_s, "map_s": map_s}


def scores(result: dict, ref, query) -> dict:
    from betavae_singlecell import metrics

    labels = ref.obs["cell_line"].astype(str).to_numpy()
    truth = query.obs["cell_line"].astype(str).to_numpy()
    pred = transfer(result["z_ref"], labels, result["z_query"])
    z = np.vstack([result["z_ref"], result["z_query"]])
    batches = np.r_[np.zeros(ref.n_obs, dtype=int), np.ones(query.n_obs, dtype=int)]
    return {"accuracy": float((pred == truth).mean()),
            "ilisi": float(metrics.ilisi(z, batches)["ilisi_normalised"]),
            "fit_s": result["fit_s"], "map_s": result["map_s"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=200, help="reference fit epochs (200)")
    p.add_argument("--query-epochs", type=int, default=None,
                   help="query training epochs (default: --epochs)")
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-top-genes", type=int, default=2000)
    p.add_argument("--methods", type=str_list, default=["ours", "untrained", "scvi"])
    p.add_argument("--quick", action="store_true", help="50 epochs, seed 0")
    p.add_argument("--defaults", action="store_true",
                   help="every method at its own defaults: ours bsc.tl.fit + map_query "
                   "(latent 20, the domain's epochs), scVI its epoch heuristic")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = 50, args.seeds[:1]
    args.query_epochs = args.query_epochs or args.epochs
    if args.defaults:
        args.epochs = args.query_epochs = None
    return args


NAMES = {"ours": "ours (map_query)", "untrained": "ours, untrained surgery",
         "scvi": "scVI load_query_data"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    quiet_libraries()
    torch.set_num_threads(args.threads)
    adata, _, flavor = load_cellbench(args.n_top_genes)
    methods = list(args.methods)
    if "scvi" in methods and scvi_version() is None:
        print("scvi-tools is not installed: ours only", file=sys.stderr)
        methods.remove("scvi")
    print(machine_line(args.threads))
    print(f"Data: CellBench {adata.n_obs} cells x {adata.n_vars} HVGs ({flavor}); reference "
          f"epochs {args.epochs or 'defaults'}, query epochs {args.query_epochs or 'defaults'}, "
          f"seeds {args.seeds}")
    run = {"ours": lambda r, q, s: ours(r, q, args.epochs, args.query_epochs, s,
                                        args.batch_size),
           "untrained": lambda r, q, s: ours(r, q, args.epochs, 0, s, args.batch_size,
                                             train_query=False),
           "scvi": lambda r, q, s: scvi_query(r, q, args.epochs, args.query_epochs, s,
                                              args.batch_size)}
    rows = []
    for ref_name, query_name in DIRECTIONS:
        batch = adata.obs["batch"].astype(str)
        ref = adata[(batch == ref_name).to_numpy()].copy()
        query = adata[(batch == query_name).to_numpy()].copy()
        for method in methods:
            per_seed = [scores(run[method](ref, query, seed), ref, query) for seed in args.seeds]
            rows.append([f"{ref_name} -> {query_name} ({ref.n_obs} -> {query.n_obs})",
                         NAMES[method], *(fmt([s[k] for s in per_seed], d) for k, d in (
                             ("accuracy", 3), ("ilisi", 3), ("fit_s", 1), ("map_s", 1)))])
            print(f"  done: {rows[-1][0]}, {rows[-1][1]}", file=sys.stderr, flush=True)
    print(table(["reference -> query (cells)", "method", "label accuracy", "iLISI (norm.)",
                 "reference fit s", "query map s"], rows))
    print("mean ± s.d. over seeds; accuracy: kNN (k=15, 1/distance votes) from reference "
          "to query latents; iLISI: reference and query pooled, 0 = apart, 1 = mixed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
