"""Sample the prior, decode (unless the generator does), and hand the run to the
domain's generator plugin.

The generator writes into a staging folder inside the (new) output folder, which is
locked meanwhile; when it returns, its files are moved into place together and recorded
in the folder's manifest. A killed or failed generation leaves no result at all, never
part of one (see `manifest.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checkpoint import check_new_output
from .context import RunContext
from .errors import ConfigError, PluginError
from .manifest import RunFolder
from .model import BetaVAE
from .plugins import call_plugin, registry
from .posterior import decode
from .registry import check_options
from .results import CandidateReport, GeneratedSamples


@torch.no_grad()
def sample(
    model: BetaVAE,
    n: int,
    *,
    covariates: torch.Tensor | None = None,
    context: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    attrs: dict[str, Any] | None = None,
    decoded: bool = True,
    batch_size: int = 4096,
) -> GeneratedSamples:
    """n prior draws, decoded to the likelihood's mean and one sample each (or, with
    `decoded=False`, the draws alone)."""
    if n < 1:
        raise ConfigError(f"n must be >= 1; got {n}.")
    needed = model.config.covariate_dim
    if needed and (covariates is None or tuple(covariates.shape) != (n, needed)):
        raise ConfigError(f"this model is conditioned on {needed} covariates: pass covariates "
                          f"of shape ({n}, {needed}).")
    model.eval()
    z = model.sample_prior(n, generator=torch.Generator().manual_seed(seed),
                           covariates=covariates).cpu()
    out = decode(model, z, covariates=covariates, context=context, params=True, seed=seed,
                 batch_size=batch_size) if decoded else None
    return GeneratedSamples(
        n=n, z=z, params=out.params if out else None, mean=out.mean if out else None,
        sample=out.sample if out else None,
        covariates=None if covariates is None else covariates.cpu(),
        domain=model.config.domain, attrs=dict(attrs or {}), model=model,
    )


def prepare_samples(mode: str, run: RunContext, n: int,
                    covariates: torch.Tensor | None,
                    context: dict[str, torch.Tensor] | None) -> GeneratedSamples:
    """What a generator of `samples=mode` receives: decoded draws, draws, or only n."""
    if mode == "none":
        return GeneratedSamples(n=n, z=None, params=None, mean=None, sample=None,
                                covariates=covariates, domain=run.domain, attrs=run.attrs,
                                model=run.model)
    if covariates is None:
        covariates = run.draw_covariates(n)
    return sample(run.model, n, covariates=covariates, context=context, seed=run.seed,
                  attrs=run.attrs, decoded=mode == "decoded")


def generate(
    model: BetaVAE | RunContext,
    n: int,
    out_dir: str | Path,
    *,
    generator: str | None = None,
    seed: int = 0,
    attrs: dict[str, Any] | None = None,
    covariates: torch.Tensor | None = None,
    context: dict[str, torch.Tensor] | None = None,
    options: dict[str, Any] | None = None,
) -> CandidateReport:
    """Prepare samples as the generator asks, and pass them with the run to the generator
    plugin, which writes into the new folder `out_dir` (all of its files appear there
    together when it returns; none if it fails or is killed).

    `model` is a fitted `BetaVAE` or a `RunContext` (as `Run.context()` gives: then the
    generator also sees the training data). `generator` defaults to the domain's own.
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1; got {n}.")
    run = model if isinstance(model, RunContext) else RunContext(model=model, split="none")
    if attrs is not None:
        run.attrs_override = dict(attrs)
    name = generator or run.config.get("data", {}).get("generator") or "arrays"
    record = registry("generators").get(name)
    options = dict(options or {})
    check_options(record, options, "generator")
    run.seed = seed
    out = Path(out_dir)
    check_new_output(out)  # before the samples are drawn, and before anything is written
    samples = prepare_samples(record.samples, run, n, covariates, context)
    with RunFolder(out, "generate") as folder:
        if folder.visible():
            check_new_output(out)
        with folder.transaction() as txn:
            run.out_dir = txn.path
            report = call_plugin(record, "generator", record.generate, run, samples, **options)
            if not isinstance(report, CandidateReport):
                raise PluginError(f"plugin {record.plugin!r}: generator {name!r} returned "
                                  f"{type(report).__name__}, not CandidateReport.",
                                  plugin=record.plugin)
    run.out_dir = out
    report.files = [_moved(f, txn.path, out) for f in report.files]
    return report


def _moved(name: Any, staged: Path, out: Path) -> Any:
    """A file name a generator reported, as it reads once its files are in `out`."""
    text, prefix = str(name), str(staged)
    if text == prefix or text.startswith(prefix + "/"):
        moved = str(out) + text[len(prefix):]
        return Path(moved) if isinstance(name, Path) else moved
    return name
