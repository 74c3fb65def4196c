"""The 2D XY model's BKT temperature from a β-VAE's latent, against the helicity modulus.

Fits one β-VAE to xy2d_tiled (xy2d at the sizes L/4, L/2, L, each tiled up to side L;
training set: seed 0; the dataset's suggested settings: von Mises decoder, periodic conv
on (cos θ, sin θ), β = 1, 2 latents; 10 epochs, as the mixed set holds three times the
items of one size; `--data xy2d` trains on side L alone),
then runs the `bkt` evaluation on independent Monte Carlo ensembles (seed 1) of the same
sizes on a fine temperature grid around the transition:

- latent: η(T) from the decoded |m| of each pair of sizes crosses 1/4 at T*(L, L'); the
  estimate combines the pairs (inverse-variance), the extrapolation
  T_BKT + c / (ln L_eff)^2 is shown too;
- helicity (Monte Carlo, independent): T*(L) where Υ(T, L) = 2T/π, same extrapolation;
- Monte Carlo |m| under the latent's estimator, to separate the latent's error from the
  estimator's;
- the literature T_BKT = 0.8929 (Hasenbusch 2005) as the reference only.

Goal (issue 15, item 4): the latent's estimate within 3 % of the helicity estimate and of
the reference. The fit is kept in --out and reused when the script is run again.

    python benchmarks/fields_bkt.py [--L 32] [--n-temperatures 13] [--samples 600]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

import betavae_core as bv
from betavae_fields import bkt


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=32, help="the model's lattice side")
    p.add_argument("--sizes", default="auto", help="Monte Carlo sizes (auto: L/4, L/2, L)")
    p.add_argument("--t-min", type=float, default=0.8)
    p.add_argument("--t-max", type=float, default=1.1)
    p.add_argument("--n-temperatures", type=int, default=13)
    p.add_argument("--samples", type=int, default=600, help="evaluation configurations per T")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--data", default="xy2d_tiled", choices=("xy2d_tiled", "xy2d"))
    p.add_argument("--readout", default="decoded", choices=("decoded", "norm"))
    p.add_argument("--seed", type=int, default=0, help="model initialisation seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/benchmarks/fields_bkt")
    return p.parse_args()


def fitted(L: int, args: argparse.Namespace, run_dir: Path) -> tuple[bv.BetaVAE, bv.DomainData]:
    """The fit in run_dir when it finished; otherwise fit xy2d at side L."""
    data, source = bv.load_data(args.data, options={"L": L})
    report = run_dir / "report.json"
    if report.exists() and (run_dir / bv.WEIGHTS).exists() and "training" in json.loads(
            report.read_text()):
        return bv.load_run(run_dir).model, data
    settings = {"epochs": args.epochs, "threads": args.threads, "progress": False,
                "seed": args.seed}
    model, train, objective, from_domain = bv.configs_for(data, settings)
    result = bv.fit(data, model, train, objective, out_dir=run_dir,
                    resume=(run_dir / bv.CONFIG).exists(), source=source,
                    from_domain=from_domain)
    return result.model, data


def _cell(c: dict) -> str:
    if c["temperature"] is None:
        return "none in range"
    return f"{c['temperature']:.4f} ± {c['error']:.4f}"


def table(m: dict) -> str:
    """The BKT table: T* per size (pair) and extrapolated, per estimator."""
    ref = m["reference_t_bkt"]
    lines = ["| estimate | sizes | T* | vs reference |", "|---|---|---|---|"]
    for name, key in (("helicity Υ = 2T/π (MC)", "helicity_crossings"),
                      ("latent η = 1/4", "latent_crossings"),
                      ("MC |m| η = 1/4", "mc_magnetization_crossings")):
        for c in m[key]:
            rel = "" if c["temperature"] is None else f"{(c['temperature'] - ref) / ref:+.2%}"
            lines.append(f"| {name} | {','.join(map(str, c['sizes']))} | {_cell(c)} | {rel} |")
    for name, key in (("helicity", "helicity"), ("latent", "latent"),
                      ("MC |m|", "mc_magnetization")):
        f = m["extrapolated"][key]
        value = ("none: " + (f["note"] or "") if f["t_bkt"] is None
                 else f"{f['t_bkt']:.4f} ± {f['error']:.4f}")
        rel = "" if f["t_bkt"] is None else f"{(f['t_bkt'] - ref) / ref:+.2%}"
        lines.append(f"| **{name}, L → ∞** | c/(ln L)² | {value} | {rel} |")
    lines.append(f"| reference (Hasenbusch 2005) | | {ref} | |")
    for name, key in (("latent", "latent"), ("MC |m|", "mc_magnetization")):
        c = m["combined"][key]
        rel = "" if c["temperature"] is None else f"{(c['temperature'] - ref) / ref:+.2%}"
        lines.append(f"| **{name}, pairs combined** | {','.join(map(str, c['sizes']))} | "
                     f"{_cell(c)} | {rel} |")
    est, gap, ref_gap = m["latent_estimate"], m["latent_vs_helicity"], m["latent_vs_reference"]
    lines.append(f"\nlatent estimate (pairs combined): "
                 f"{'none' if est is None else f'{est:.4f}'}; vs helicity (extrapolated) "
                 f"{'n/a' if gap is None else f'{gap:.2%}'}, vs reference "
                 f"{'n/a' if ref_gap is None else f'{ref_gap:.2%}'} (goal < 3 %)")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    suffix = f"_seed{args.seed}" if args.seed else ""
    model, data = fitted(args.L, args, out / f"fit_{args.data}_L{args.L}{suffix}")
    fit_s = time.perf_counter() - start
    run = bv.RunContext(model=model, heldout=data, split="all")
    result = bkt.bkt(run, sizes=args.sizes, t_min=args.t_min, t_max=args.t_max,
                     n_temperatures=args.n_temperatures, samples=args.samples,
                     readout=args.readout)
    total_s = time.perf_counter() - start
    bv.save_figure(result.figures["bkt"], out / "bkt.png")
    summary = {**result.metrics, "fit_seconds": fit_s, "total_seconds": total_s,
               "machine": f"{platform.processor() or platform.machine()}, "
                          f"{os.cpu_count()} CPUs, torch threads {args.threads}"}
    (out / "bkt.json").write_text(json.dumps(summary, indent=2))
    print(f"XY BKT, model L = {args.L} ({args.data}, readout {args.readout}), sizes "
          f"{result.metrics['sizes']}, "
          f"{args.n_temperatures} temperatures in [{args.t_min}, {args.t_max}], "
          f"{args.samples} configurations each; {summary['machine']}")
    print(table(result.metrics))
    print(f"\nwall: fit (or reuse) {fit_s:.0f} s, total {total_s:.0f} s; "
          f"plot {out / 'bkt.png'}, summary {out / 'bkt.json'}")


if __name__ == "__main__":
    main()
