"""Finite-size scaling of Monte Carlo |m| with no known critical values (issue 15, item 2).

For each lattice side L the repo's own sampler draws configurations on one control grid
(2D Ising across temperature, Wolff near Tc; or phi^4 across kappa, Wolff embedding near
kappa_c), and `betavae_fields.scaling` reads the transition off the magnetisation alone:
Binder cumulants U_L with bootstrap errors, their crossings for every pair of sizes, the
crossings extrapolated to L -> oo with nu from the collapse, and a collapse of U_L on
(T - Tc) L^(1/nu) that fits Tc and nu together. The known answers (Onsager's Tc, nu = 1,
U* = 0.61069; for phi^4 the sampler's documented kappa_c = 0.339) are printed and drawn as
references only. The same functions take a latent coordinate in place of |m|.

`--latent` (issue 15, item 5a) adds the latent of ONE model: a fully convolutional
encoder with global pooling (`lattice_fcn`) trained at one size (`--train-size`, with
the data's own likelihood: Gaussian for phi^4) on an independent ensemble, then read at
every size, one size per tensor. The encoder is the same local function averaged over
sites at every L, so its latent means the same thing at each; no padding is involved,
which phi^4 needs (0 is a valid field value, so a padded item's side cannot be read
from zeros, and a likelihood would score the padding as data). Its spin-flip odd part
(`order_values`) goes through the same scaling functions beside |m|, and so does the
magnetisation the decoder expects at the posterior mean ("latent, decoded", its odd part:
`betavae_fields.readout`).

    python benchmarks/fields_fss.py [--model ising] [--sizes 8,12,16,24] [--samples 800]
    python benchmarks/fields_fss.py --model phi4 --latent [--train-size 16 --epochs 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

import betavae_core as bv
from betavae_fields import scaling
from betavae_fields.datasets import ensemble_data
from betavae_fields.evaluations import flipped_means, order_latent, order_values
from betavae_fields.montecarlo import KAPPA_C_PHI4, TC_ISING, sample_ising, sample_phi4
from betavae_fields.readout import decoded_odd
from betavae_fields.transition import BINDER_ISING

GRIDS = {"ising": (2.15, 2.40, 11), "phi4": (0.31, 0.37, 13)}
REFERENCE = {"ising": ("Onsager Tc", TC_ISING), "phi4": ("documented kappa_c", KAPPA_C_PHI4)}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(GRIDS), default="ising")
    p.add_argument("--sizes", default="8,12,16,24")
    p.add_argument("--grid", help="low,high,count of the control grid [default per model]")
    p.add_argument("--samples", type=int, default=800, help="configurations per value")
    p.add_argument("--chains", type=int, default=32, help="chains per value")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latent", action="store_true",
                   help="also the latent of one lattice_fcn model read at every size")
    p.add_argument("--train-size", type=int, help="--latent: L the model trains at "
                                                   "[default: the largest of --sizes]")
    p.add_argument("--train-samples", type=int, default=300,
                   help="--latent: training configurations per control value")
    p.add_argument("--epochs", type=int, default=20, help="--latent: training epochs")
    p.add_argument("--dilations", default="1,1",
                   help="--latent: lattice_fcn's conv dilations (1,1: a 5 x 5 receptive "
                        "field, local at L = 8)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/benchmarks/fields_fss")
    return p.parse_args()


def sample(model: str, L: int, grid: np.ndarray, args: argparse.Namespace):
    common = dict(seed=args.seed + L, n_therm=100, n_pilot=100)
    if model == "ising":
        return sample_ising(L, grid, args.samples, chains_per_temperature=args.chains, **common)
    return sample_phi4(L, grid, args.samples, chains_per_kappa=args.chains, **common)


def trained(args: argparse.Namespace, grid: np.ndarray, train_size: int, out: Path
            ) -> bv.BetaVAE:
    """lattice_fcn fitted at one size on its own ensemble (another seed); reused when
    out/fit holds a finished fit."""
    run = out / "fit"
    if (run / "report.json").exists() and (run / bv.WEIGHTS).exists():
        return bv.load_run(run).model
    own = argparse.Namespace(**{**vars(args), "samples": args.train_samples,
                                "seed": args.seed + 1000})
    data = ensemble_data(sample(args.model, train_size, grid, own), "fields_fss")
    settings = {"architecture": "lattice_fcn", "epochs": args.epochs, "latent_dim": 2,
                "beta": 1.0, "threads": args.threads, "progress": False,
                "architecture_options": {"dilations": args.dilations}}
    model, train, objective, from_domain = bv.configs_for(data, settings)
    return bv.fit(data, model, train, objective, out_dir=run, from_domain=from_domain,
                  source={"benchmark": "fields_fss", "L": train_size}).model


def table(name: str, label: str, curves, ref: float) -> dict:
    """Crossings, extrapolation and collapse of one observable, printed."""
    result = scaling.analyse(curves)
    found, fit, ext = result.found, result.collapse, result.extrapolated
    for c in found:
        if c.control is None:
            print(f"| {label} | crossing L = {c.sizes[0]}/{c.sizes[1]} | none | | {c.note} |")
        else:
            print(f"| {label} | crossing L = {c.sizes[0]}/{c.sizes[1]} | {c.control:.4f} | "
                  f"{c.error:.4f} | {(c.control - ref) / ref:+.2%} |")
    if ext.tc is not None:
        print(f"| {label} | crossings → L = ∞ (L_eff^(-1/ν), ν from collapse) | "
              f"{ext.tc:.4f} | {ext.tc_error:.4f} | {(ext.tc - ref) / ref:+.2%} |")
    else:
        print(f"| {label} | crossings → L = ∞ | none | | {ext.note} |")
    print(f"| {label} | collapse {name}_c | {fit.tc:.4f} | {fit.tc_error or float('nan'):.4f} "
          f"| {(fit.tc - ref) / ref:+.2%} |")
    print(f"| {label} | collapse ν | {fit.nu:.3f} | {fit.nu_error or float('nan'):.3f} | "
          f"{fit.nu - 1:+.1%} (vs 1); quality {fit.quality:.2f} |")
    return {"found": found, "fit": fit, "ext": ext}


def main() -> None:
    args = parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    lo, hi, n = GRIDS[args.model] if args.grid is None else (
        float(args.grid.split(",")[0]), float(args.grid.split(",")[1]),
        int(args.grid.split(",")[2]))
    grid = np.round(np.linspace(lo, hi, n), 6)
    out = Path(args.out) / args.model
    out.mkdir(parents=True, exist_ok=True)
    name = "temperature" if args.model == "ising" else "kappa"
    observables = {"Monte Carlo |m|": ([], [], [])}
    if args.latent:
        import torch

        torch.set_num_threads(args.threads)
        start = time.perf_counter()
        model = trained(args, grid, args.train_size or max(sizes), out)
        print(f"model at L = {args.train_size or max(sizes)}: {time.perf_counter() - start:.0f} s",
              flush=True)
        observables["latent"] = ([], [], [])
        observables["latent, decoded"] = ([], [], [])
        dim = None
    for L in sizes:
        start = time.perf_counter()
        ens = sample(args.model, L, grid, args)
        if args.latent:
            data = ensemble_data(ens, "fields_fss")
            mu, logvar = bv.encode(model, data)
            flipped = flipped_means(model, data)
            dim = order_latent(model, mu, logvar) if dim is None else dim
            for key, values in (("latent", order_values(model, data, mu, dim, flipped=flipped)),
                                ("latent, decoded", decoded_odd(model, mu, flipped))):
                for part, a in zip(observables[key], (values, ens.control, np.full(len(ens), L)),
                                   strict=True):
                    part.append(a)
        for part, a in zip(observables["Monte Carlo |m|"],
                           (np.abs(ens.magnetization), ens.control, np.full(len(ens), L)),
                           strict=True):
            part.append(a)
        print(f"L = {L}: {len(ens)} configurations in {time.perf_counter() - start:.0f} s, "
              f"spacing {min(ens.spacing.values())}-{max(ens.spacing.values())}, capped at "
              f"{ens.params['spacing_capped'] or 'none'}", flush=True)
    label, ref = REFERENCE[args.model]
    print(f"\n{args.model}: finite-size scaling ({platform.machine()}, {os.cpu_count()} "
          f"cores, under load); {n} values in [{lo}, {hi}], {args.samples} configurations "
          f"each; references: {label} = {ref:.5f}, nu = 1, U* = {BINDER_ISING}\n")
    print(f"| observable | estimate | {name} | ± | rel. to reference |")
    print("|---|---|---|---|---|")
    results = {}
    for key, parts in observables.items():
        curves = scaling.binder_curves(*(np.concatenate(a) for a in parts), control_name=name)
        results[key] = table(name, key, curves, ref)
        stem = {"latent": "latent", "latent, decoded": "latent_decoded"}.get(key, "mc")
        bv.save_figure(scaling.binder_figure(curves, results[key]["found"], {label: ref},
                                             BINDER_ISING), out / f"{stem}_binder.png")
        bv.save_figure(scaling.collapse_figure(curves, results[key]["fit"]),
                       out / f"{stem}_collapse.png")
    for key in ("latent", "latent, decoded") if args.latent else ():
        lat, mc = results[key]["fit"].tc, results["Monte Carlo |m|"]["fit"].tc
        print(f"\n{key} collapse vs Monte Carlo collapse: {(lat - mc) / mc:+.2%} "
              f"(goal within 1 %: {'PASS' if abs(lat - mc) / mc < 0.01 else 'MISS'})")
        pairs = {c.sizes: c.control for c in results["Monte Carlo |m|"]["found"]}
        for c in results[key]["found"]:
            if c.control is not None and pairs.get(c.sizes) is not None:
                ref_c = pairs[c.sizes]
                print(f"crossing {c.sizes[0]}/{c.sizes[1]}: {key} vs Monte Carlo "
                      f"{(c.control - ref_c) / ref_c:+.2%}")
    print(f"wrote the figures in {out}")


if __name__ == "__main__":
    main()
