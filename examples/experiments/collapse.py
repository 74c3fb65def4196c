"""Experiment 3: posterior collapse at large β and with ungated skips, and its cures
(gated skip, free bits, capacity target), on shapes (about 1 minute on 2 CPU cores).

    python examples/experiments/collapse.py [--out runs/experiments/collapse]
"""

import argparse

from betavae_science.experiments import run_experiment
from betavae_science.experiments.collapse import table

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="runs/experiments/collapse",
                    help="new directory for result.json and collapse.png")
parser.add_argument("--quick", action="store_true", help="small configuration (seconds)")
parser.add_argument("--seed", type=int, default=0, help="data and model seed")
args = parser.parse_args()

result = run_experiment("collapse", args.out, quick=args.quick, seed=args.seed)
print(f"collapse ({result.seconds:.0f} s)")
print(table(result))
print("checks:", ", ".join(f"{k}={v}" for k, v in result.checks.items()))
print(f"wrote {args.out}/")
