"""Peak memory of betavae_singlecell on a large backed AnnData (one epoch).

Anchor: the goal that a scanpy user can fit on a dataset larger than they want to hold in
memory: with `anndata.read_h5ad(path, backed="r")`, one epoch of `bsc.tl.fit` must stay
under 2 GiB peak resident memory (the whole process: Python, torch, anndata, the model).

The data: a synthetic h5ad of `--cells` x `--genes` (default 200,000 x 2,000) integer
counts, sparse CSR with about `--density` (10%) non-zero, each non-zero 1 + Poisson(gene
mean) with gene means spread log-uniformly over 0.1 .. 10. It is written chunk by chunk
(`anndata.io.write_elem` of the first chunk, then `sparse_dataset(...).append`), so
building it needs one chunk in memory, never the whole matrix. It goes to a temporary
directory (deleted afterwards) or to `--path` (kept; reused when its shape matches).

Each measurement runs in a fresh Python subprocess, so nothing from the writer or the other
mode counts: import anndata and betavae_singlecell, open the file (`backed="r"`, or read
fully into memory as a CSR AnnData for comparison), run
`bsc.tl.fit(adata, likelihood="nb", epochs=1, batch_size=128, progress=False)`, and report
the peak resident set size (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) after imports,
after opening and after the fit (cross-checked against VmHWM of /proc/self/status; the
child is started through `sh -c` so that ru_maxrss does not inherit the parent's peak, as
it does on Linux for a process spawned straight from a large one), and cells/s = cells /
wall seconds of the fit call (setup and data scan, one training epoch over 90% of the
cells, the validation pass over the rest, and encoding every cell into `obsm`).

Goal: peak RSS of the backed fit < 2 GiB. The in-memory row is for comparison only. The
exit code is 0 either way.

    python benchmarks/singlecell_memory.py                        # 200,000 x 2,000, ~10% nnz
    python benchmarks/singlecell_memory.py --cells 20000 --genes 500   # smoke run
    python benchmarks/singlecell_memory.py --path /tmp/big.h5ad --modes backed --threads 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _tables import table
from singlecell_vs_scvi import load_avg, machine_line, str_list, verdict

GOAL_GIB = 2.0
GIB = 1024**3


def write_synthetic(path: Path, n_cells: int, n_genes: int, density: float, seed: int,
                    chunk: int = 10_000) -> int:
    """Write the h5ad chunkwise; return the number of stored non-zeros."""
    import anndata as ad
    import h5py
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    gene_mean = np.exp(rng.uniform(np.log(0.1), np.log(10.0), n_genes))
    skeleton = ad.AnnData(obs=pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)]),
                          var=pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)]))
    skeleton.write_h5ad(path)
    del skeleton
    nnz = 0
    with h5py.File(path, "a") as f:
        for start in range(0, n_cells, chunk):
            rows = min(chunk, n_cells - start)
            m = sp.random(rows, n_genes, density=density, format="csr", dtype=np.float32,
                          rng=rng)
            m.data = (1 + rng.poisson(gene_mean[m.indices])).astype(np.float32)
            nnz += m.nnz
            if start == 0:
                ad.io.write_elem(f, "X", m)
            else:
                ad.io.sparse_dataset(f["X"]).append(m)
    return nnz


def stored_shape(path: Path) -> tuple[int, int, int] | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            x = f["X"]
            return int(x.attrs["shape"][0]), int(x.attrs["shape"][1]), int(x["data"].shape[0])
    except (OSError, KeyError):
        return None


CHILD = r"""
import json, re, resource, sys, time
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
def hwm():
    with open("/proc/self/status") as f:
        m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
    return int(m.group(1)) * 1024 if m else None
path, mode, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
import torch
torch.set_num_threads(threads)
import anndata
import betavae_singlecell as bsc
out = {"mode": mode, "rss_imports": peak()}
t0 = time.perf_counter()
adata = anndata.read_h5ad(path, backed="r" if mode == "backed" else None)
out["open_s"] = time.perf_counter() - t0
out["x_type"] = type(adata.X).__name__
out["rss_open"] = peak()
t0 = time.perf_counter()
bsc.tl.fit(adata, likelihood="nb", epochs=1, batch_size=128, progress=False)
out["fit_s"] = time.perf_counter() - t0
out["rss_fit"] = peak()
out["vmhwm_fit"] = hwm()
out["obsm_written"] = "X_betavae" in adata.obsm
print("RESULT " + json.dumps(out))
"""


def run_child(path: Path, mode: str, threads: int, timeout: float) -> dict:
    start = time.perf_counter()
    try:
        # Through a shell that forks: a child spawned straight from this (large) process
        # inherits its peak RSS in ru_maxrss on Linux; a fork of the small shell does not.
        cmd = ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-c", CHILD,
               str(path), mode, str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"mode": mode, "error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT "):])
            res["process_s"] = time.perf_counter() - start
            return res
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
    return {"mode": mode, "error": f"exit {proc.returncode}: " + " / ".join(tail)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=200_000)
    p.add_argument("--genes", type=int, default=2_000)
    p.add_argument("--density", type=float, default=0.1, help="fraction non-zero (0.1)")
    p.add_argument("--path", type=Path, default=None,
                   help="where to write (and keep) the h5ad; default a temporary directory")
    p.add_argument("--modes", type=str_list, default=["backed", "memory"],
                   help="comma list of backed, memory")
    p.add_argument("--threads", type=int, default=2, help="torch threads in the child (2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per child")
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = p.parse_args(argv)
    bad = set(args.modes) - {"backed", "memory"}
    if bad:
        p.error(f"unknown modes {sorted(bad)}; use backed, memory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine_line(args.threads))
    tmp = None
    if args.path is None:
        tmp = Path(tempfile.mkdtemp(prefix="bsc-memory-"))
        path = tmp / "synthetic.h5ad"
    else:
        path = args.path
    try:
        shape = stored_shape(path) if path.exists() else None
        if path.exists() and (shape is None or shape[:2] != (args.cells, args.genes)):
            sys.exit(f"error: {path} exists and is not a {args.cells} x {args.genes} h5ad "
                     f"of this benchmark; choose another --path.")
        if shape is None:
            t0 = time.perf_counter()
            nnz = write_synthetic(path, args.cells, args.genes, args.density, args.seed)
            print(f"wrote {path} ({path.stat().st_size / GIB:.2f} GiB, {nnz:,} non-zeros) "
                  f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        else:
            nnz = shape[2]
            print(f"reusing {path} ({nnz:,} non-zeros)", file=sys.stderr)
        load_before = load_avg()
        results = []
        for mode in args.modes:
            res = run_child(path, mode, args.threads, args.timeout)
            res.update(cells=args.cells, genes=args.genes, nnz=nnz)
            results.append(res)
            print(f"  {mode}: {json.dumps(res)}", file=sys.stderr, flush=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    for r in results:
        goal = f"< {GOAL_GIB:g} GiB" if r["mode"] == "backed" else "(reference)"
        if "error" in r:
            rows.append([r["mode"], f"{args.cells:,}", f"{args.genes:,}", f"{nnz:,}", "-", "-",
                         "-", "-", "-", goal, "ERROR"])
            continue
        peak = r["rss_fit"] / GIB
        ok = verdict(peak < GOAL_GIB) if r["mode"] == "backed" else ""
        rows.append([r["mode"], f"{args.cells:,}", f"{args.genes:,}", f"{nnz:,}",
                     f"{r['rss_imports'] / GIB:.2f}", f"{r['rss_open'] / GIB:.2f}",
                     f"{peak:.2f}", f"{r['fit_s']:.1f}", f"{args.cells / r['fit_s']:,.0f}",
                     goal, ok])
    print()
    print(table(["mode", "cells", "genes", "nnz", "RSS after imports GiB",
                 "RSS after open GiB", "peak RSS GiB", "fit s", "cells/s", "goal", "result"],
                rows))
    for r in results:
        if "error" in r:
            print(f"\n{r['mode']} failed: {r['error']}")
    print(f"\n1-min load average {load_before:.2f} before, {load_avg():.2f} after; "
          f"cells/s = cells / wall of the whole 1-epoch fit call")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "singlecell_memory",
                                         "machine": machine_line(args.threads),
                                         "rows": results}, indent=2))
        print(f"rows written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
