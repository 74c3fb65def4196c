"""Experiment 1: the β sweep's rate–distortion curve on shapes and mixed_factors
(a few minutes on 2 CPU cores).

    python examples/experiments/rate_distortion.py [--out DIR] [--quick]
"""

import argparse

from betavae_science.experiments import run_experiment
from betavae_science.experiments.rate_distortion import table

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="runs/experiments/rate_distortion")
parser.add_argument("--quick", action="store_true", help="small configuration (seconds)")
args = parser.parse_args()

result = run_experiment("rate_distortion", args.out, quick=args.quick)
print(table(result))
print(f"checks: {result.checks} ({result.seconds:.0f} s); wrote {args.out}/")
