"""The rate–distortion curve from one β-conditioned fit against K separate fits.

One multi-rate model (`fit(..., beta_range=(min β, max β))`: log β an input of encoder
and decoder and a per-unit scale 1 + w·η + b on every layer's pre-activations, β drawn
log-uniformly per item; after Bae, Zhang and Grosse 2023) is read at each β and compared
with a separate β-VAE fit at that β: held-out rate and distortion (nats per item, on
the same validation split), their ratios, the active units of each (KL > 0.1 nats),
and the CPU and wall time of the one fit against those of one separate fit. Goal: each
ratio within 5 % of 1 at ≤ 2× the cost of one fit.

The anchor is each separate fit at its best by its own objective: at each β several
separate-fit recipes (`RECIPES`: training length, early stopping, β warm-up) are fit
and the one with the lowest held-out D + β R is the anchor (the selection table is
printed first, before the one fit is trained). "One fit's cost" is the mean CPU time of
the chosen separate fits; `--budget` (default 2) times it, less a 10 % margin, sets the
one fit's epochs from a timed two-epoch probe unless `--one-fit-epochs` is given. With
one thread, CPU time is the cost least moved by other processes.

    OMP_NUM_THREADS=1 python benchmarks/multirate.py --data shapes -o n=2000 -o size=16 \
        --epochs 100 [--seed 1]
    OMP_NUM_THREADS=1 python benchmarks/multirate.py --epochs 120    # mixed_factors
"""

from __future__ import annotations

import argparse
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import betavae_core as bv


@dataclass(frozen=True)
class Recipe:
    """How one separate fit (or the one fit) is trained; epochs in units of --epochs."""

    name: str
    length: float = 1.0  # most epochs, as a multiple of --epochs
    patience: int | None = None  # early stopping on the validation objective
    warmup: float = 0.0  # epochs of linear β warm-up from 0 (0: constant β)
    lr: float | None = None  # None: --lr


RECIPES = {r.name: r for r in (
    Recipe("fixed"),  # the anchor of session 21: --epochs epochs, best epoch kept
    Recipe("long", length=3.0, patience=30),
    Recipe("warm20", length=3.0, patience=30, warmup=20),
    Recipe("warm60", length=3.0, patience=30, warmup=60),
    Recipe("lr1e-3", length=3.0, patience=30, lr=1e-3),
)}


def _fit(data, args, recipe: Recipe, beta_range=None, beta=1.0, epochs=None):
    """One fit; returns the result and its (wall, CPU) seconds."""
    model = bv.ModelConfig.for_data(data, latent_dim=args.latent_dim,
                                    architecture_options={"hidden": args.hidden})
    train = bv.TrainConfig(epochs=epochs or max(1, round(recipe.length * args.epochs)),
                           batch_size=args.batch_size, lr=recipe.lr or args.lr,
                           patience=recipe.patience, keep="best", progress=False,
                           device="cpu", seed=args.seed)
    objective = (bv.Objective(beta=beta, schedule="warmup", warmup_epochs=recipe.warmup)
                 if recipe.warmup > 0 else bv.Objective(beta=beta))
    t0, c0 = time.perf_counter(), time.process_time()
    result = bv.fit(data, model, train, objective, beta_range=beta_range)
    return result, (time.perf_counter() - t0, time.process_time() - c0)


def _units(terms) -> int:
    """Latent dimensions carrying more than 0.1 nats (separate / one fit in the table)."""
    return int((terms.kl_per_dim > 0.1).sum())


def _select_anchors(data, args, betas):
    """Fit every recipe at every β; the anchor at β is the recipe with the lowest
    held-out D + β R (ties within 1e-3 nats: the cheaper). Prints the table."""
    names = args.recipes.split(",")
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; choose from {sorted(RECIPES)}.")
    cache = Path(args.anchor_cache) if args.anchor_cache else None
    stored = pickle.loads(cache.read_bytes()) if cache and cache.exists() else {}
    setting = (args.data, tuple(args.option), args.seed, args.epochs, args.lr,
               tuple(args.hidden), args.latent_dim, args.batch_size)
    fits = {}
    for beta in betas:
        for name in names:
            key = (*setting, RECIPES[name], beta)  # the recipe itself: edits refit
            if key not in stored:
                result, seconds = _fit(data, args, RECIPES[name], beta=beta)
                terms = bv.evaluate_terms(result.model, data.subset(result.val_indices))
                stored[key] = (terms, seconds, result.best_epoch, len(result.history))
            fits[beta, name] = stored[key]
    if cache:
        cache.write_bytes(pickle.dumps(stored))
        print(f"# separate fits read from / added to {cache} (times are of the run that fit them)")
    print("# anchor selection: held-out D + beta R of each separate-fit recipe "
          "(best epoch / epochs run, CPU s); * = chosen (lowest)")
    print(f"{'recipe':>8} " + " ".join(f"{'beta ' + format(b, 'g'):>24}" for b in betas))
    chosen = {}
    for beta in betas:
        objective = {n: fits[beta, n][0].distortion + beta * fits[beta, n][0].rate
                     for n in names}
        best = min(objective.values())
        tied = [n for n in names if objective[n] <= best + 1e-3]
        chosen[beta] = min(tied, key=lambda n, beta=beta: fits[beta, n][1][1])  # cheaper
    for name in names:
        cells = []
        for beta in betas:
            t, s, best, run = fits[beta, name]
            mark = "*" if chosen[beta] == name else " "
            cells.append(f"{t.distortion + beta * t.rate:9.3f}{mark} {best:>3}/{run:<3} "
                         f"{s[1]:5.1f}s")
        print(f"{name:>8} " + " ".join(f"{c:>24}" for c in cells))
    return {beta: fits[beta, chosen[beta]] + (chosen[beta],) for beta in betas}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mixed_factors")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--betas", default="0.5,1,2")
    parser.add_argument("--epochs", type=int, default=40,
                        help="epochs of the 'fixed' recipe; the others run up to 3x that")
    parser.add_argument("--recipes", default="fixed,long,warm20,warm60",
                        help=f"separate-fit recipes to choose the anchor from: {list(RECIPES)}")
    parser.add_argument("--budget", type=float, default=2.0,
                        help="the one fit's CPU budget in chosen separate fits")
    parser.add_argument("--one-fit-epochs", type=int, default=None,
                        help="epochs of the one fit [default: from --budget]")
    parser.add_argument("--one-fit-warmup", type=float, default=60.0,
                        help="epochs of linear warm-up of the one fit's β weights (0: none)")
    parser.add_argument("--latent-dim", type=int, default=6)
    parser.add_argument("--hidden", type=lambda s: [int(h) for h in s.split(",")],
                        default=[128, 64])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--anchor-cache", default=None, metavar="FILE",
                        help="keep the separate fits' held-out terms and times in FILE and "
                        "reuse them (to try one-fit settings against the same anchor)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    betas = sorted(float(b) for b in args.betas.split(","))
    data, _ = bv.load_data(args.data, options=bv.parse_options(args.option))
    beta_range = (betas[0], betas[-1])

    one_recipe = Recipe("one", warmup=args.one_fit_warmup)
    for br in (None, beta_range):  # untimed: the first fit's set-up
        _fit(data, args, RECIPES["fixed"], beta_range=br, epochs=1)
    anchors = _select_anchors(data, args, betas)
    sep_cpu = sum(a[1][1] for a in anchors.values()) / len(anchors)
    sep_wall = sum(a[1][0] for a in anchors.values()) / len(anchors)
    epochs = args.one_fit_epochs
    if epochs is None:  # the budget, less 10 %, over the one fit's CPU time per epoch
        _, probe = _fit(data, args, one_recipe, beta_range=beta_range, epochs=2)
        epochs = max(1, int(0.9 * args.budget * sep_cpu / (probe[1] / 2)))
    if one_recipe.warmup >= epochs:
        print(f"# warning: the one fit's warm-up ({one_recipe.warmup:g} epochs) is not shorter "
              f"than its {epochs} epochs, so β never reaches its weight; lower "
              f"--one-fit-warmup")
    one, one_seconds = _fit(data, args, one_recipe, beta_range=beta_range, epochs=epochs)
    heldout = data.subset(one.val_indices)  # the split depends on the seed only

    print(f"# {args.data} {args.option}: {len(data)} items, held-out {len(heldout)}; latent "
          f"{args.latent_dim}, hidden {args.hidden}; one fit {epochs} epochs over beta "
          f"{beta_range[0]:g}..{beta_range[1]:g} (warm-up {args.one_fit_warmup:g}, best epoch "
          f"{one.best_epoch}), seed {args.seed}, {args.threads} thread(s)")
    print(f"{'beta':>6} {'anchor':>8} {'rate sep':>9} {'rate one':>9} {'ratio':>6} "
          f"{'dist sep':>9} {'dist one':>9} {'ratio':>6} {'dD nats':>8} {'D+bR sep':>9} "
          f"{'D+bR one':>9} {'units':>5}")
    worst = 0.0
    for beta in betas:
        a, name = anchors[beta][0], anchors[beta][-1]
        b = bv.evaluate_terms(one.model, heldout, beta=beta)
        r_rate, r_dist = b.rate / a.rate, b.distortion / a.distortion
        worst = max(worst, abs(r_rate - 1), abs(r_dist - 1))
        print(f"{beta:>6g} {name:>8} {a.rate:>9.3f} {b.rate:>9.3f} {r_rate:>6.3f} "
              f"{a.distortion:>9.3f} {b.distortion:>9.3f} {r_dist:>6.3f} "
              f"{b.distortion - a.distortion:>+8.3f} {a.distortion + beta * a.rate:>9.3f} "
              f"{b.distortion + beta * b.rate:>9.3f} {_units(a):>2}/{_units(b):<2}")
    for kind, one_s, sep_s in (("CPU", one_seconds[1], sep_cpu),
                               ("wall", one_seconds[0], sep_wall)):
        print(f"{kind} time: one fit {one_s:.1f} s; chosen separate fits {sep_s:.1f} s each "
              f"(mean); one fit / one separate fit = {one_s / sep_s:.2f}")
    print(f"largest |ratio - 1| = {worst:.3f} (goal <= 0.05, at <= {args.budget:g}x the CPU "
          f"time of one fit)")


if __name__ == "__main__":
    main()
