"""Experiment 5: MIG, DCI and MCC of β-VAEs at several β against PCA and FastICA on the
same held-out items, on shapes and mixed_factors (a few minutes on 2 CPU cores).

    python examples/experiments/disentanglement.py [--out runs/experiments/disentanglement]
"""

import argparse

from betavae_science.experiments import run_experiment

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="runs/experiments/disentanglement",
                    help="a new directory for result.json and disentanglement.png")
parser.add_argument("--quick", action="store_true", help="small configuration (seconds)")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

result = run_experiment("disentanglement", args.out, quick=args.quick, seed=args.seed)
print(f"disentanglement ({result.seconds:.0f} s): checks {result.checks}")
for name, panel in result.metrics.items():
    print(f"\n  {name}: {panel['n_train']} train / {panel['n_heldout']} held-out items, "
          f"latent_dim {panel['latent_dim']}, mean over seeds {panel['seeds']}")
    print(f"  {'':>10} {'MIG':>13} {'DCI D':>13} {'DCI C':>6} {'DCI I':>6} {'MCC':>6} "
          f"{'active':>6}")
    entries = [(f"β={r['beta']:g}", r) for r in panel["rows"]]
    entries += [(b, e) for b, e in panel["baselines"].items()]
    for label, e in entries:
        active = f"{e['active_units']:6.2f}" if "active_units" in e else f"{'':>6}"
        print(f"  {label:>10} {e['mig']:6.3f}±{e['mig_sd']:.3f} "
              f"{e['dci_disentanglement']:6.3f}±{e['dci_disentanglement_sd']:.3f} "
              f"{e['dci_completeness']:6.3f} {e['dci_informativeness']:6.3f} {e['mcc']:6.3f} "
              f"{active}")
print(f"\nwrote {args.out}/")
