"""Experiments 1 and 2: the β sweep's rate–distortion curve and the decorrelation of the
aggregate posterior, on shapes and mixed_factors (a few minutes on 2 CPU cores).

    python examples/experiments/rate_distortion.py [--out runs/experiments]
"""

import argparse
from pathlib import Path

from betavae_core.experiments import run_experiment

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="runs/experiments")
parser.add_argument("--quick", action="store_true", help="small configuration (seconds)")
args = parser.parse_args()

for name in ("rate_distortion", "decorrelation"):
    result = run_experiment(name, Path(args.out) / name, quick=args.quick)
    print(f"\n{name} ({result.seconds:.0f} s): checks {result.checks}")
    for data_name, entry in result.metrics.items():
        print(f"  {data_name}")
        print(f"  {'beta':>6} {'rate':>8} {'distortion':>11} {'active':>7} {'offdiag':>8} "
              f"{'TC':>7}")
        for r in entry["rows"]:
            print(f"  {r['beta']:>6g} {r['rate']:>8.2f} {r['distortion']:>11.2f} "
                  f"{r['active_units']:>7d} {r['offdiag_mass']:>8.4f} "
                  f"{r['total_correlation_gaussian']:>7.3f}")
    print(f"  wrote {Path(args.out) / name}/")
