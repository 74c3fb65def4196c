"""The core's generator: decoded samples as numpy arrays with a summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from betavae_core import plots
from betavae_core.checkpoint import write_array, write_json
from betavae_core.context import RunContext
from betavae_core.results import CandidateReport, GeneratedSamples


def generate_arrays(run: RunContext, samples: GeneratedSamples) -> CandidateReport:
    """Write latents.npy, means.npy, samples.npy and summary.json (plus a PNG for images)."""
    out_dir: Path = run.out_dir
    mean = samples.mean.cpu().numpy()
    sample = samples.sample.cpu().numpy()
    files = {"latents.npy": samples.z.cpu().numpy(), "means.npy": mean, "samples.npy": sample}
    for name, array in files.items():
        write_array(out_dir / name, array)
    written = list(files)
    finite = np.isfinite(sample).reshape(len(sample), -1).all(axis=1)
    summary = {
        "n": int(len(sample)),
        "event_shape": list(sample.shape[1:]),
        "valid": int(finite.sum()),
        "valid_fraction": float(finite.mean()),
        "sample_mean": float(np.nanmean(sample)),
        "sample_std": float(np.nanstd(sample)),
        "mean_range": [float(np.nanmin(mean)), float(np.nanmax(mean))],
    }
    if samples.attrs.get("image") and mean.ndim == 3:
        k = min(10, len(mean))
        fig = plots.image_rows([mean[:k], sample[:k]], ["mean", "sample"],
                               "Generated from prior draws")
        plots.save_figure(fig, out_dir / "generated.png")
        written.append("generated.png")
    write_json(out_dir / "summary.json", summary)
    written.append("summary.json")
    return CandidateReport(objects=sample, summary=summary, files=written)
