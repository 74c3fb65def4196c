"""Experiment 4: MCC against the true sources and between 5 seeds for the isotropic,
anisotropic, Laplace and conditional (iVAE) priors, on nonlinearly mixed segmented
sources and a Gaussian-sources control (about 20 minutes on 2 CPU cores; --quick: seconds).

    python examples/experiments/identifiability.py [--out runs/experiments/identifiability]
"""

import argparse

from betavae_science.experiments import run_experiment
from betavae_science.experiments.identifiability import table

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="runs/experiments/identifiability",
                    help="new directory for result.json and identifiability.png")
parser.add_argument("--quick", action="store_true", help="small configuration (seconds)")
parser.add_argument("--seed", type=int, default=0, help="data seed and model-seed offset")
args = parser.parse_args()

result = run_experiment("identifiability", args.out, quick=args.quick, seed=args.seed)
print(f"identifiability ({result.seconds:.0f} s)")
print(table(result))
print(f"wrote {args.out}/")
