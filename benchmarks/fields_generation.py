"""Generated 2D Ising configurations judged by their energy: factorised vs multiscale decoder.

Two β-VAEs are fitted to the same Monte Carlo data (the `ising2d` dataset, with the
training settings it suggests), differing only in the decoder likelihood: `spin`
(independent Bernoulli per site, the usual choice) and `spin_multiscale` (sites drawn
coarse to fine with learned couplings; the plugin's default). At T = 1.8, 2.27 and 3.0
each model generates configurations the way `betavae generate RUN -g temperature=T` does
off the training grid: fresh Monte Carlo configurations at T are encoded, z is drawn
from q(z|x) around each encoding, and a configuration is decoded. The table gives the
1-Wasserstein distance between the energy (and |m|) distributions of generated and Monte
Carlo configurations, side by side, and their ratio. A second table decodes at the
encodings' means instead (`-g posterior=mean`): the decoder alone supplies the
fluctuations, and a broad posterior no longer mixes in neighbouring temperatures.

`--seeds 0,1` fits both models once per training seed and adds a table of the spread
(mean, min and max over seeds). Fits are shared with fields_tc.py when --out is the same
(the multiscale fit at L with seed 0 is the same run), and reused when the script is run
again: use a fresh --out after the decoder changes.

    python benchmarks/fields_generation.py [--L 16] [--n 1000] [--seeds 0,1]
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
    p.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/benchmarks/fields_tc")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    data, source = ising(args.L, args, seed=0)
    settings = fit_settings(args)
    seeds = [int(s) for s in str(args.seeds).split(",")]
    references = {T: monte_carlo_at(data.attrs, T, args.n, seed=11) for T in TEMPERATURES}
    tables = []
    for seed in seeds:
        rows, hists = compare_at_seed(data, source, settings, out, args.L, seed, references)
        for how in physics.POSTERIORS:
            report(rows[how], args, describe_fit(data, settings), seed, how)
        tables.append(rows)
        for label, name in DECODERS.items():
            bv.save_figure(energy_histograms(hists[label], "temperature"),
                           out / f"L{args.L}_energy_{name}{_seed_suffix(seed)}.png")
    if len(seeds) > 1:
        for how in physics.POSTERIORS:
            spread([t[how] for t in tables], seeds, how)
    print(f"wrote energy histograms into {out}/")


def _seed_suffix(seed: int) -> str:
    return "" if seed == 0 else f"_seed{seed}"


def compare_at_seed(data: bv.DomainData, source: dict, settings: dict, out: Path, L: int,
                    seed: int, references: dict) -> tuple[list[dict], dict]:
    """Fit (or reuse) both decoders with one training seed; compare them at every T."""
    models = {}
    for label, likelihood in DECODERS.items():
        suffix = ("" if likelihood == "spin_multiscale" else f"_{likelihood}") + \
            _seed_suffix(seed)
        t0 = time.perf_counter()
        models[label] = fitted(data, source, out / f"L{L}{suffix}",
                               {**settings, "likelihood": likelihood, "seed": seed})
        print(f"{label}, seed {seed}: fit ready in {time.perf_counter() - t0:.0f} s",
              flush=True)
    rows = {how: [] for how in physics.POSTERIORS}
    hists = {label: {} for label in DECODERS}
    for T, reference in references.items():
        ref_obs = physics.observables("ising", reference.x.numpy(), T, {})
        for how in physics.POSTERIORS:
            row = {"T": T}
            for label, model in models.items():
                generated, _ = physics.decode_around(model, reference, seed=5, posterior=how)
                gen_obs = physics.observables("ising", generated, T, {})
                row[label] = physics.compare_observables(gen_obs, ref_obs)
                if how == "sample":
                    hists[label][T] = (gen_obs[0], ref_obs[0])
            rows[how].append(row)
    return rows, hists


def report(rows: list[dict], args, fit_text: str, seed: int, how: str) -> None:
    fac, mul = DECODERS
    print(f"\nGenerated vs Monte Carlo 2D Ising configurations, L = {args.L}, {args.n} per T, "
          f"training seed {seed}, z = posterior {how}")
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


def spread(tables: list[list[dict]], seeds: list[int], how: str) -> None:
    """Energy W1 per T over the training seeds: mean [min, max] and the wins per seed."""
    fac, mul = DECODERS
    print(f"\nSpread over training seeds {seeds}, z = posterior {how}: W1(E), mean "
          f"[min, max]\n")
    print("| T | W1(E) factorised | W1(E) multiscale | ratio of means | seeds won |")
    print("|---|---|---|---|---|")
    for i, T in enumerate(TEMPERATURES):
        a = np.array([t[i][fac]["w1_energy"] for t in tables])
        b = np.array([t[i][mul]["w1_energy"] for t in tables])
        print(f"| {T} | {a.mean():.4f} [{a.min():.4f}, {a.max():.4f}] | {b.mean():.4f} "
              f"[{b.min():.4f}, {b.max():.4f}] | {b.mean() / a.mean():.2f} | "
              f"{int((b < a).sum())}/{len(seeds)} |")


if __name__ == "__main__":
    main()
