"""Crystals demo: learn from structures that ship with pymatgen/ase, generate new
candidates, relax them with EMT. No download, no data files; about a minute on 2 cores.

1. 34 ideal cubic ABX3 perovskites built with pymatgen (lattice constants from Shannon
   radii; the Goldschmidt tolerance factor is the property), each repeated with a
   jittered lattice (the `toy_perovskites` dataset); a beta-VAE is fitted with the
   crystals domain's training defaults (beta 0.05, latent 16, 200 epochs, no early
   stopping), checked by reconstruction, and asked for candidates steered toward a
   tolerance factor of 1.0 (the ideal cubic perovskite).
2. fcc/bcc/hcp cells of the metals ASE's EMT covers; candidates are generated and
   relaxed with EMT, reporting each relaxation's status and energy.

    python examples/crystals_demo.py [--out DIR]   (default: a new runs/crystals_demo_<time>)
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

import betavae_core as bv
from betavae_crystals import from_structures, generate_candidates
from betavae_crystals.datasets import emt_metals


def show(title: str, summary: dict) -> None:
    print(f"\n== {title}")
    print("funnel:", json.dumps(summary["funnel"]))
    if "property" in summary:
        p = summary["property"]
        print(f"predicted {p['name']}: target {p['target']}, accepted mean "
              f"{p['predicted_mean_accepted']}")
    if "relaxation" in summary:
        print("relaxation:", json.dumps(summary["relaxation"]))


def fit_with_domain_defaults(data: bv.DomainData) -> bv.FitResult:
    """Fit with the settings the crystals domain suggests for whatever we leave unset
    (here: all but the progress bar)."""
    model, train, objective, from_domain = bv.configs_for(data, {"progress": False})
    print(f"fitting {len(data)} structures with the domain's {from_domain}")
    return bv.fit(data, model, train, objective, from_domain=from_domain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=f"runs/crystals_demo_{time.strftime('%Y%m%d-%H%M%S')}")
    out = Path(parser.parse_args().out)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")

    data, _ = bv.load_data("toy_perovskites", options={"copies": 6})
    print(f"{len(data)} toy perovskites, species {data.attrs['representation']['species']}")
    fitted = fit_with_domain_defaults(data)
    rec = bv.evaluate(fitted.model, data, names=["crystal_reconstruction"])
    print(f"reconstruction of the training structures: match "
          f"{rec['crystal_reconstruction']['match_rate']:.0%}")
    report = generate_candidates(fitted.model, data, 2000, out / "perovskites", seed=1,
                                 target=1.0, keep="novel")
    show(f"perovskite candidates in {out / 'perovskites'}", report.summary)

    metals = from_structures(emt_metals(copies=4))  # in-memory data: the same defaults
    fitted = fit_with_domain_defaults(metals)
    report = generate_candidates(fitted.model, metals, 200, out / "metals", relax="emt",
                                 keep="unique")
    show(f"relaxed metal candidates in {out / 'metals'}", report.summary)


if __name__ == "__main__":
    main()
