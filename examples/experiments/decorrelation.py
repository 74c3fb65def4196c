"""Experiment 2: decorrelation. The aggregate posterior's off-diagonal covariance and
total correlation fall as β rises, on shapes and mixed_factors (a few minutes).

    python examples/experiments/decorrelation.py [--out runs/experiments/decorrelation] [--quick]
"""

import argparse

from betavae_science.experiments import run_experiment
from betavae_science.experiments.rate_distortion import table

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="runs/experiments/decorrelation")
parser.add_argument("--quick", action="store_true", help="small configuration (seconds)")
args = parser.parse_args()

result = run_experiment("decorrelation", args.out, quick=args.quick)
print(table(result))
print(f"checks: {result.checks} ({result.seconds:.0f} s); wrote {args.out}/")
