"""Generated 2D Ising configurations judged by their energy: factorised vs multiscale decoder.

Two β-VAEs are fitted to the same Monte Carlo data (the `ising2d` dataset, with the
training settings it suggests), differing only in the decoder likelihood: `spin`
(independent Bernoulli per site, the usual choice) and `spin_multiscale` (sites drawn
coarse to fine with learned couplings; the plugin's default). At T = 1.8, 2.27 and 3.0
each model generates configurations the way `betavae generate RUN -g temperature=T` does
off the training grid: fresh Monte Carlo configurations at T are encoded, z is drawn
around each encoding, and a configuration is decoded. The table gives the 1-Wasserstein
distance between the energy (and |m|) distributions of generated and Monte Carlo
configurations, side by side, and their ratio.

Fits are shared with fields_tc.py when --out is the same (the multiscale fit at L is
the same run), and reused when the script is run again.

    python benchmarks/fields_generation.py [--L 16] [--n 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from fields_tc import describe_fit, fit_settings, fitted, ising

import betavae_core as bv
from betavae_fields import physics
from betavae_fields.evaluations import energy_histograms
from betavae_fields.generation import monte_carlo_at

TEMPERATURES = (1.8, 2.27, 3.0)
DECODERS = {"factorised (spin)": "spin", "multiscale (spin_multiscale)": "spin_multiscale"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=16)
    p.add_argument("--n", type=int, default=1000, help="configurations generated per T")
    p.add_argument("--t-min", type=float, default=1.6)
    p.add_argument("--t-max", type=float, default=3.2)
    p.add_argument("--n-temperatures", type=int, default=33)
    p.add_argument("--samples", type=int, default=300)
    unset = " [default: the dataset's suggestion]"
    p.add_argument("--epochs", type=int, help="training epochs" + unset)
    p.add_argument("--beta", type=float, help="β" + unset)
    p.add_argument("--latent-dim", type=int, help="latent dimensions" + unset)
    p.add_argument("--channels", type=int, help="lattice_conv channels" + unset)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/benchmarks/fields_tc")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    data, source = ising(args.L, args, seed=0)
    settings = fit_settings(args)
    models = {}
    for label, likelihood in DECODERS.items():
        suffix = "" if likelihood == "spin_multiscale" else f"_{likelihood}"
        t0 = time.perf_counter()
        models[label] = fitted(data, source, out / f"L{args.L}{suffix}",
                               {**settings, "likelihood": likelihood})
        print(f"{label}: fit ready in {time.perf_counter() - t0:.0f} s", flush=True)
    rows, hists = [], {label: {} for label in DECODERS}
    for T in TEMPERATURES:
        reference = monte_carlo_at(data.attrs, T, args.n, seed=11)
        row = {"T": T}
        for label, model in models.items():
            generated, _ = physics.decode_around(model, reference, seed=5)
            gen_obs = physics.observables("ising", generated, T, {})
            ref_obs = physics.observables("ising", reference.x.numpy(), T, {})
            row[label] = physics.compare_observables(gen_obs, ref_obs)
            hists[label][T] = (gen_obs[0], ref_obs[0])
        rows.append(row)
    report(rows, args, describe_fit(data, settings))
    for label in DECODERS:
        name = DECODERS[label]
        bv.save_figure(energy_histograms(hists[label], "temperature"),
                    out / f"L{args.L}_energy_{name}.png")
    print(f"wrote energy histograms into {out}/")


def report(rows: list[dict], args, fit_text: str) -> None:
    fac, mul = DECODERS
    print(f"\nGenerated vs Monte Carlo 2D Ising configurations, L = {args.L}, {args.n} per T")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}; {fit_text} (likelihood as labelled), on "
          f"{args.n_temperatures} x {args.samples} configurations\n")
    print("| T | <E> MC | <E> factorised | <E> multiscale | W1(E) factorised | "
          "W1(E) multiscale | ratio | W1(|m|) factorised | W1(|m|) multiscale |")
    print("|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for r in rows:
        a, b = r[fac], r[mul]
        ratios.append(b["w1_energy"] / a["w1_energy"])
        print(f"| {r['T']} | {a['energy_mc']:.4f} | {a['energy_generated']:.4f} | "
              f"{b['energy_generated']:.4f} | {a['w1_energy']:.4f} | {b['w1_energy']:.4f} | "
              f"{ratios[-1]:.2f} | {a['w1_abs_m']:.4f} | {b['w1_abs_m']:.4f} |")
    wins = sum(x < 1 for x in ratios)
    print(f"\nmultiscale energy W1 below the factorised decoder's at {wins}/{len(rows)} "
          f"temperatures (goal: all): {'PASS' if wins == len(rows) else 'MISS'}; "
          f"geometric mean ratio {float(np.exp(np.mean(np.log(ratios)))):.2f}")


if __name__ == "__main__":
    main()
