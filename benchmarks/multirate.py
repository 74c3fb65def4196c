"""The rate–distortion curve from one β-conditioned fit against K separate fits.

One multi-rate model (`fit(..., beta_range=(min β, max β))`: log β an input of encoder
and decoder and a per-unit scale 1 + w·η + b on every layer's pre-activations, β drawn
log-uniformly per item; after Bae, Zhang and Grosse 2023) is read at each β and compared
with a separate β-VAE fit at that β: held-out rate and distortion (nats per item, on
the same validation split), their ratios, the active units of each (KL > 0.1 nats),
and the wall and CPU time of the one fit against those of one separate fit (after an
untimed one-epoch fit of each kind; with one thread, CPU time is the cost least moved
by other processes). Goal: each ratio within 5 % of 1 at ≤ 2× the cost of one fit.
The yardstick's own noise is shown beside it: the ratios of a second separate fit with
another seed ("seed" columns), and the held-out β-objective D + β R of each (lower is
better).

    OMP_NUM_THREADS=1 python benchmarks/multirate.py              # mixed_factors, 3 βs
    python benchmarks/multirate.py --data shapes --betas 0.5,1,2,4 --epochs 30
"""

from __future__ import annotations

import argparse
import time

import torch

import betavae_core as bv


def _fit(data, args, beta_range=None, beta=1.0, epochs=None, seed=None):
    model = bv.ModelConfig.for_data(data, latent_dim=args.latent_dim,
                                    architecture_options={"hidden": args.hidden})
    train = bv.TrainConfig(epochs=epochs or args.epochs, batch_size=args.batch_size,
                           lr=args.lr, patience=None, keep="best", progress=False,
                           device="cpu", seed=args.seed if seed is None else seed)
    t0, c0 = time.perf_counter(), time.process_time()
    result = bv.fit(data, model, train, bv.Objective(beta=beta), beta_range=beta_range)
    return result, (time.perf_counter() - t0, time.process_time() - c0)


def _units(terms) -> int:
    """Latent dimensions carrying more than 0.1 nats (separate / one fit in the table)."""
    return int((terms.kl_per_dim > 0.1).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mixed_factors")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--betas", default="0.5,1,2")
    parser.add_argument("--epochs", type=int, default=40, help="epochs of each separate fit")
    parser.add_argument("--one-fit-epochs", type=int, default=None,
                        help="epochs of the one fit [default: as --epochs]")
    parser.add_argument("--latent-dim", type=int, default=6)
    parser.add_argument("--hidden", type=lambda s: [int(h) for h in s.split(",")],
                        default=[128, 64])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--on-train", action="store_true",
                        help="also compare on (400 of) the training items: separates fit "
                        "from generalisation")
    parser.add_argument("--margin", type=float, default=0.0,
                        help="train the one fit over a β range wider by this share of the "
                        "log range at each end (the edges are then inside the range)")
    parser.add_argument("--seed-noise", action="store_true",
                        help="also fit each β with another seed (the yardstick's noise)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    betas = sorted(float(b) for b in args.betas.split(","))
    data, _ = bv.load_data(args.data, options=bv.parse_options(args.option))

    widen = (betas[-1] / betas[0]) ** args.margin
    for beta_range in (None, (betas[0], betas[-1])):  # untimed: the first fit's set-up
        _fit(data, args, beta_range=beta_range, epochs=1)
    one, one_seconds = _fit(data, args, beta_range=(betas[0] / widen, betas[-1] * widen),
                            epochs=args.one_fit_epochs)
    heldout = data.subset(one.val_indices)  # the split depends on the seed only
    if args.on_train:
        heldout = data.subset(one.train_indices[:400])
    separate, other, seconds = {}, {}, []
    for beta in betas:
        result, s = _fit(data, args, beta=beta)
        separate[beta] = bv.evaluate_terms(result.model, heldout)
        seconds.append(s)
        if args.seed_noise:  # another seed draws another split: held-out on its own
            again, _ = _fit(data, args, beta=beta, seed=args.seed + 1)
            other[beta] = bv.evaluate_terms(again.model, data.subset(again.val_indices))

    split = "training items" if args.on_train else "held-out"
    print(f"# {args.data} {args.option}: {len(data)} items, {split} {len(heldout)}; "
          f"latent {args.latent_dim}, hidden {args.hidden}, {args.epochs} epochs per separate "
          f"fit, {args.one_fit_epochs or args.epochs} for the one fit (over β "
          f"{one.model.config.beta_range[0]:.3g}..{one.model.config.beta_range[1]:.3g}), "
          f"{args.threads} thread(s)")
    print(f"{'beta':>6} {'rate sep':>9} {'rate one':>9} {'ratio':>6} "
          f"{'dist sep':>9} {'dist one':>9} {'ratio':>6} {'D+bR sep':>9} {'D+bR one':>9} "
          f"{'units':>5}" + (f" {'seed rate':>9} {'seed dist':>9}" if other else ""))
    worst = 0.0
    for beta in betas:
        a, b = separate[beta], bv.evaluate_terms(one.model, heldout, beta=beta)
        r_rate, r_dist = b.rate / a.rate, b.distortion / a.distortion
        worst = max(worst, abs(r_rate - 1), abs(r_dist - 1))
        line = (f"{beta:>6g} {a.rate:>9.3f} {b.rate:>9.3f} {r_rate:>6.3f} "
                f"{a.distortion:>9.3f} {b.distortion:>9.3f} {r_dist:>6.3f} "
                f"{a.distortion + beta * a.rate:>9.3f} {b.distortion + beta * b.rate:>9.3f} "
                f"{_units(a):>2}/{_units(b):<2}")
        if other:
            c = other[beta]
            line += f" {c.rate / a.rate:>9.3f} {c.distortion / a.distortion:>9.3f}"
        print(line)
    for i, kind in enumerate(("wall", "CPU")):  # CPU time: less moved by other processes
        mean_sep = sum(s[i] for s in seconds) / len(seconds)
        print(f"{kind} time: one fit {one_seconds[i]:.1f} s; separate fits "
              f"{sum(s[i] for s in seconds):.1f} s in all, {mean_sep:.1f} s each; one fit / "
              f"one separate fit = {one_seconds[i] / mean_sep:.2f}")
    print(f"largest |ratio - 1| = {worst:.3f} (goal <= 0.05, at <= 2x the cost of one fit)")


if __name__ == "__main__":
    main()
