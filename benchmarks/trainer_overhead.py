"""How much does `betavae_core.fit` cost over a bare PyTorch loop on the same work?

Both variants train the same model (same `ModelConfig`, same seed, built by
`betavae_core.trainer.build_model`) on the same training split (`split_indices`) of the
`shapes` dataset (6000 items, 28x28, Bernoulli likelihood, latent 10, default MLP), with
the same loss (distortion + beta * rate through the model's forward and
`Objective.loss`), batch size 128, Adam lr 1e-3, for the same number of epochs.

- ours: `fit` with its normal features on: validation split 0.1 (evaluated every
  epoch), gradient clipping (default 10.0), NaN guard, per-epoch history, a checkpoint
  every epoch into a temporary run directory, best-weight tracking; progress bar off and
  patience above the epoch count, so every epoch runs.
- ours, checkpoint at end: the same with `checkpoint_every = epochs` (one checkpoint),
  to separate the cost of checkpoints from the cost of validation.
- bare: the training loop alone, with no validation, clipping, checkpoints or logging.

Each variant runs `--repeats` times in alternating order after an untimed one-epoch
warm-up; the table gives the median wall time of the whole call (model construction
included, data loading excluded). The goal is ours/bare <= 1.10; the exit code is 0
either way, and the table says PASS or MISS.

    python benchmarks/trainer_overhead.py [--epochs 10] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from betavae_core import ModelConfig, Objective, TrainConfig, fit
from betavae_core.data import DomainData
from betavae_core.default_plugins.data import load_shapes
from betavae_core.trainer import build_model, split_indices

GOAL = 1.10
BATCH_SIZE = 128
LR = 1e-3
VAL_FRACTION = 0.1
LATENT_DIM = 10


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_ours(
    data: DomainData,
    config: ModelConfig,
    objective: Objective,
    epochs: int,
    seed: int,
    device: str,
    threads: int,
    checkpoint_every: int,
) -> float:
    """Seconds for one `fit` call with validation and checkpoints into a temp run dir."""
    train = TrainConfig(
        epochs=epochs,
        batch_size=BATCH_SIZE,
        lr=LR,
        val_fraction=VAL_FRACTION,
        patience=epochs + 1,
        seed=seed,
        checkpoint_every=checkpoint_every,
        device=device,
        threads=threads,
        progress=False,
    )
    with tempfile.TemporaryDirectory(prefix="betavae-bench-") as tmp:
        sync(torch.device(device))
        t0 = time.perf_counter()
        result = fit(data, config, train, objective, out_dir=Path(tmp) / "run")
        sync(torch.device(device))
        seconds = time.perf_counter() - t0
    if len(result.history) != epochs:
        raise RuntimeError(f"ours ran {len(result.history)} epochs, not {epochs}.")
    return seconds


def run_bare(
    data: DomainData,
    config: ModelConfig,
    objective: Objective,
    epochs: int,
    seed: int,
    device: str,
    threads: int,
) -> float:
    """Seconds for a plain minibatch loop: forward, `Objective.loss`, backward, Adam."""
    torch.set_num_threads(threads)
    dev = torch.device(device)
    train_idx, _ = split_indices(len(data), VAL_FRACTION, seed)
    x_all = data.x
    with torch.random.fork_rng(devices=[] if dev.type == "cpu" else [dev]):
        sync(dev)
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = build_model(config, seed).to(dev)
        optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
        x_train = x_all[torch.as_tensor(train_idx, dtype=torch.long)]
        n = len(x_train)
        n_batches = math.ceil(n / BATCH_SIZE)
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(n)
            for b in range(n_batches):
                x = x_train[order[b * BATCH_SIZE : (b + 1) * BATCH_SIZE]].to(dev)
                loss = objective.loss(model(x), epoch + b / n_batches)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        sync(dev)
        seconds = time.perf_counter() - t0
    if not torch.isfinite(loss):
        raise RuntimeError(f"bare loop ended with a non-finite loss ({loss.item()}).")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both variants")
    parser.add_argument("--n", type=int, default=6000, help="shapes items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beta", type=float, default=4.0)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--epochs, --repeats and --threads must be >= 1.")

    torch.set_num_threads(args.threads)
    data = load_shapes(n=args.n, size=28, seed=args.seed)
    config = ModelConfig.for_data(data, latent_dim=LATENT_DIM)
    objective = Objective(beta=args.beta)
    common = (data, config, objective)

    def ours(every: int) -> Callable[[int], float]:
        return lambda e: run_ours(*common, e, args.seed, args.device, args.threads, min(every, e))

    variants: dict[str, Callable[[int], float]] = {
        "ours": ours(1),
        "ours, checkpoint at end": ours(args.epochs),
        "bare": lambda e: run_bare(*common, e, args.seed, args.device, args.threads),
    }
    names = list(variants)
    load_before = load_average()
    if not args.no_warmup:
        for name in names:
            variants[name](1)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(variants[name](args.epochs))
            print(
                f"  repeat {r + 1}/{args.repeats}  {name:<24} {times[name][-1]:7.3f} s",
                file=sys.stderr,
                flush=True,
            )

    load_after = load_average()
    median = {name: statistics.median(ts) for name, ts in times.items()}
    bare = median["bare"]
    n_train = len(split_indices(len(data), VAL_FRACTION, args.seed)[0])
    print(
        f"machine: {cpu_model()}, {usable_cores()} cores; torch {torch.__version__}; "
        f"python {platform.python_version()}; torch threads {args.threads}; "
        f"device {args.device}"
    )
    print(
        f"data: shapes, {len(data)} items 28x28 ({n_train} train), bernoulli, "
        f"latent {LATENT_DIM}, mlp; batch {BATCH_SIZE}, Adam lr {LR:g}, beta {args.beta:g}; "
        f"median of {args.repeats}"
    )
    print()
    header = (
        f"| {'variant':<24} | epochs | median s |  min s | epochs/s | ours/bare "
        f"| goal <= {GOAL:.2f} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name in names:
        ratio = median[name] / bare
        is_ours = name != "bare"
        verdict = ("PASS" if ratio <= GOAL else "MISS") if is_ours else ""
        ratio_s = f"{ratio:.3f}x" if is_ours else "1.000x"
        print(
            f"| {name:<24} | {args.epochs:>6} | {median[name]:>8.3f} | "
            f"{min(times[name]):>6.3f} | {args.epochs / median[name]:>8.2f} | "
            f"{ratio_s:>9} | {verdict:<12} |"
        )
    verdict = "PASS" if median["ours"] / bare <= GOAL else "MISS"
    print()
    print(f"{verdict}: ours/bare = {median['ours'] / bare:.3f}x (goal <= {GOAL:.2f}x)")
    spread = max((max(ts) - min(ts)) / statistics.median(ts) for ts in times.values())
    loads = ""
    if load_before is not None and load_after is not None:
        loads = f"1-min load average {load_before:.2f} before, {load_after:.2f} after; "
    print(
        f"{loads}largest spread between repeats {spread:.1%}"
        + (
            " (noisy: other processes competed for the CPU; rerun when the machine is quiet)"
            if args.repeats > 1 and spread > 0.10
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
