"""CUDA check and throughput of the single-cell fit: the same data and settings on the CPU
and on the GPU, in one run, plus the tl API end to end on the GPU.

    python benchmarks/gpu_check.py [--cells 20000 --genes 2000 --epochs 3]

Prints a table of seconds per epoch and cells per second per device and batch size,
with the ratio to the CPU, then checks that a CUDA fit recovers the simulated cell types
(k-means ARI), generates cells whose per-gene means agree with real ones, evaluates,
and reloads to the same encodings.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import numpy as np
import torch

import betavae_singlecell as bsc


def timed_fit(adata, device: str, batch_size: int, epochs: int):
    t0 = time.perf_counter()
    model = bsc.tl.fit(adata, likelihood="nb", batch_key="batch", label_key="cell_type",
                       epochs=epochs, batch_size=batch_size, device=device, progress=False,
                       copy=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    n_train = model.record["report"]["n_train"]
    return model, seconds / epochs, n_train * epochs / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"CPU threads, torch {torch.__version__}")
    if not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here; nothing to check.")
    print(f"GPU: {torch.cuda.get_device_name(0)}")
    adata = bsc.datasets.synthetic(n_cells=args.cells, n_genes=args.genes, n_types=8,
                                   n_batches=2, seed=0)
    warm = adata[:1000].copy()
    for device in ("cpu", "cuda"):  # first-call costs (threads, kernels) out of the timings
        timed_fit(warm, device, 128, 1)
    rows = []
    for device, batch_size in [("cpu", 128), ("cuda", 128), ("cuda", 1024)]:
        model, s_epoch, cells_s = timed_fit(adata, device, batch_size, args.epochs)
        rows.append((device, batch_size, s_epoch, cells_s, model))
    cpu_rate = rows[0][3]
    print(f"\n{'device':<6} {'batch':>6} {'s/epoch':>8} {'cells/s':>10} {'vs CPU':>7}")
    for device, batch_size, s_epoch, cells_s, _ in rows:
        print(f"{device:<6} {batch_size:>6} {s_epoch:>8.2f} {cells_s:>10.0f} "
              f"{cells_s / cpu_rate:>6.1f}x")

    # The tl API on the GPU: a longer fit, then encode, generate, evaluate, reload.
    small = adata[:5000].copy()
    model = bsc.tl.fit(small, likelihood="nb", batch_key="batch", label_key="cell_type",
                       epochs=60, device="cuda", progress=False)
    assert model.vae.device.type == "cuda"
    z = small.obsm["X_betavae"]
    ari = bsc.metrics.clustering_scores(z, small.obs["cell_type"], seed=0)["ari"]
    fake = bsc.tl.generate(model, 5000, seed=1)
    agree = bsc.metrics.expression_agreement(small.X, fake.X)["summary"]
    metrics = bsc.tl.evaluate(model, small[:2000].copy(), label_key="cell_type")
    with tempfile.TemporaryDirectory() as tmp:
        model.save(f"{tmp}/m")
        back = bsc.load(f"{tmp}/m", adata=small)
        z_back = bsc.tl.encode(back, small, key_added=None)
    print(f"\nCUDA tl API on {small.n_obs} cells: k-means ARI {ari:.3f}; generated per-gene "
          f"mean r {agree['mean_log1p_r']:.3f}, zero-fraction r {agree['zero_fraction_r']:.3f}; "
          f"held-out IW NLL {metrics['singlecell_heldout']['iw_nll']:.1f} nats/cell; reload "
          f"max |dz| {np.abs(z_back - z).max():.2e}")
    ok = ari > 0.8 and agree["mean_log1p_r"] > 0.9 and np.abs(z_back - z).max() < 1e-4
    print("CUDA check:", "PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
