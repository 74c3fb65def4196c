"""The `betavae` command line: plugins, datasets, train, evaluate, sweep, generate, and
the subcommands plugins add (`register_commands`).

Start-up does no work: `--help`, `--version`, `plugins` and `datasets` import neither
torch nor matplotlib nor any domain library; each command imports what it needs.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from .errors import BetaVAEError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# `priors.PRIORS`, spelled out here so that start-up imports no torch (a test checks).
PRIOR_CHOICES = ("isotropic", "anisotropic", "laplace", "student_t", "conditional", "mog")


def _friendly_errors(func):
    """Print BetaVAEError as one line (exit 1) instead of a traceback; so too an OSError
    about permissions, a read-only file system or a full disk, naming the path."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .locking import describe_os_error, writable_error

        try:
            return func(*args, **kwargs)
        except BetaVAEError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            if not writable_error(exc):
                raise
            where = kwargs.get("out_dir") or kwargs.get("run_dir") or "the output folder"
            raise click.ClickException(str(describe_os_error(exc, where))) from exc
        except KeyboardInterrupt:
            click.echo("\ninterrupted; the last checkpoint is kept (resume with --resume).",
                       err=True)
            sys.exit(130)

    return wrapper


class PluginGroup(click.Group):
    """The command group; plugins' subcommands are added the first time one is needed
    (again after the plugins were reloaded, e.g. by `reset_plugins()`)."""

    _added_for: object = None
    _core_commands: dict[str, click.Command] | None = None

    def _add_plugin_commands(self) -> None:
        from .plugins import get_host

        host = get_host()
        if host is not self._added_for:
            if self._core_commands is None:
                self._core_commands = dict(self.commands)
            self.commands = dict(self._core_commands)
            self._added_for = host
            host.add_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self._add_plugin_commands()
        return super().get_command(ctx, cmd_name)


@click.group(cls=PluginGroup, context_settings=CONTEXT)
@click.version_option(package_name="betavae")
def main() -> None:
    """β-VAEs on your own data, with rate and distortion reported separately.

    β is the price of information: every fit logs the rate (KL per latent dimension,
    nats) and the distortion (−log p(x|z)) so you can read the trade-off, spot posterior
    collapse and see how decorrelated the latents are. Domains (single-cell, lattice
    fields, crystals, your own) come as plugins: see `betavae plugins`.

    \b
    Start here:
      betavae datasets
      betavae train shapes --beta 4 --latent-dim 10 --epochs 20 --out runs/a
      betavae evaluate runs/a
      betavae generate runs/a -n 1000 --out cands/
    """


# --- plugins, datasets -----------------------------------------------------------------
@main.command(short_help="List installed plugins and what they register.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_friendly_errors
def plugins(as_json: bool) -> None:
    """List installed plugins, what each registers, and whether it loaded."""
    from .plugins import plugin_infos

    infos = [i.to_dict() for i in plugin_infos()]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    for info in infos:
        version = f" {info['version']}" if info["version"] else ""
        click.echo(f"{info['name']}{version}  [{info['status']}]  {info['module']}")
        if info["reason"]:
            click.echo(f"    reason: {info['reason']}")
        for kind, names in info["registers"].items():
            click.echo(f"    {kind}: {', '.join(names)}")


@main.command(short_help="List named datasets and file loaders.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_friendly_errors
def datasets(as_json: bool) -> None:
    """List named datasets and file loaders the installed plugins provide."""
    from .plugins import registry

    rows = [{"name": d.name, "kind": "dataset", "plugin": d.plugin, "domain": d.domain,
             "has_factors": d.has_factors, "options": d.options, "defaults": d.defaults,
             "help": d.help}
            for d in registry("datasets")]
    rows += [{"name": ld.name, "kind": "loader", "plugin": ld.plugin, "domain": ld.domain,
              "has_factors": None, "options": ld.options, "defaults": ld.defaults,
              "help": ld.help}
             for ld in registry("loaders")]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo("Named datasets (use the name as DATA):")
    for r in (r for r in rows if r["kind"] == "dataset"):
        factors = "factors" if r["has_factors"] else "no factors"
        click.echo(f"  {r['name']:<16} {r['plugin']:<16} {factors:<11} {r['help']}")
        _echo_settings(r)
    click.echo("File loaders (use a path as DATA; --loader NAME to choose):")
    for r in (r for r in rows if r["kind"] == "loader"):
        click.echo(f"  {r['name']:<16} {r['plugin']:<16} {r['help']}")
        _echo_settings(r)


def _echo_settings(row: dict[str, Any]) -> None:
    for label in ("options", "defaults"):
        if row[label]:
            text = " ".join(f"{k}={v}" for k, v in row[label].items())
            name = "options" if label == "options" else "suggests"
            click.echo(f"  {'':<16} {name}: {text}")


# --- shared training options -----------------------------------------------------------
# Settings a domain may suggest default to None here: None means "not set", so the
# domain's suggestion (then the core's default, shown in the help) applies.
def _training_options(func):
    options = [
        click.argument("data"),
        click.option("--loader", default=None, help="Loader to read DATA with, when a path is "
                     "claimed by several."),
        click.option("-o", "--option", "data_options", multiple=True, metavar="KEY=VALUE",
                     help="Dataset or loader option (repeatable), e.g. -o n=2000."),
        click.option("--batch-key", default=None, metavar="KEY",
                     help="Column of batches to condition on, for loaders that take one "
                     "(same as -o batch_key=KEY), e.g. an obs column of an .h5ad."),
        click.option("--beta", type=float, default=None,
                     help="Weight of the rate (KL) against the distortion [default: the "
                     "domain's, else 1]."),
        click.option("--latent-dim", type=int, default=None,
                     help="Latent dimensions [default: the domain's, else 10]."),
        click.option("--likelihood", default=None, help="Decoder likelihood (default: the "
                     "data's own)."),
        click.option("--likelihood-option", multiple=True, metavar="KEY=VALUE",
                     help="Likelihood option (repeatable), e.g. scale=0.1."),
        click.option("--architecture", default=None, help="Encoder/decoder (default: the "
                     "data's own, else mlp)."),
        click.option("--arch-option", multiple=True, metavar="KEY=VALUE",
                     help="Architecture option (repeatable), e.g. hidden=256,128."),
        click.option("--prior", type=click.Choice(list(PRIOR_CHOICES)), default=None,
                     help="p(z): Gaussian (isotropic, anisotropic), factorised Laplace or "
                     "Student-t, a learned mixture of Gaussians (mog), or p(z|u) from the "
                     "covariates (conditional, the iVAE construction) [default: the "
                     "domain's, else isotropic]."),
        click.option("--prior-option", multiple=True, metavar="KEY=VALUE",
                     help="Prior option (repeatable): student_t df=3, mog components=10, "
                     "conditional hidden=32."),
        click.option("--prior-scales", default=None, help="Comma-separated prior s.d. per "
                     "latent dimension (anisotropic; the scale parameter for laplace, "
                     "student_t)."),
        click.option("--learn-prior", is_flag=True, help="Learn the prior scales."),
        click.option("--skip", type=click.Choice(["none", "fixed", "learned"]), default="none",
                     show_default=True, help="Decoder skip connections from the encoder."),
        click.option("--skip-gate", type=float, default=1.0, show_default=True),
        click.option("--schedule", type=click.Choice(["constant", "warmup", "cyclical"]),
                     default=None, help="β schedule [default: the domain's, else constant]."),
        click.option("--warmup-epochs", type=float, default=None,
                     help="Epochs of the β warm-up [default: the domain's, else 10]."),
        click.option("--cycle-epochs", type=float, default=10.0, show_default=True),
        click.option("--capacity", type=float, default=None, help="Target rate C in nats "
                     "(loss = distortion + γ|rate − C|)."),
        click.option("--capacity-epochs", type=float, default=20.0, show_default=True),
        click.option("--gamma", type=float, default=100.0, show_default=True),
        click.option("--tc-beta", type=float, default=None, help="β-TCVAE: weight of the "
                     "total correlation (the rest of the rate keeps --beta) [default: off]."),
        click.option("--tc-estimator", type=click.Choice(["mws", "mss"]), default="mws",
                     show_default=True, help="Minibatch TC estimate: weighted or stratified "
                     "sampling (Chen et al. 2018)."),
        click.option("--free-bits", type=float, default=None,
                     help="Free nats per latent dimension [default: the domain's, else 0]."),
        click.option("--epochs", type=int, default=None,
                     help="Training epochs [default: the domain's, else 50]."),
        click.option("--batch-size", type=int, default=None,
                     help="Minibatch size [default: the domain's, else 128]."),
        click.option("--lr", type=float, default=None,
                     help="Adam learning rate [default: the domain's, else 1e-3]."),
        click.option("--val-fraction", type=float, default=None,
                     help="Validation share [default: the domain's, else 0.1]."),
        click.option("--patience", type=int, default=None,
                     help="Early stopping patience, in epochs after the beta warm-up, on "
                          "the validation objective (0: off) [default: the domain's, "
                          "else 10]."),
        click.option("--keep", type=click.Choice(["best", "last"]), default=None,
                     help="Weights to keep: the best validation epoch after the warm-up, "
                          "or the last epoch [default: the domain's, else best]."),
        click.option("--grad-clip", type=float, default=10.0, show_default=True,
                     help="Gradient norm clip (0: off)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--checkpoint-every", type=int, default=1, show_default=True),
        click.option("--device", default="auto", show_default=True,
                     help="auto (CUDA when present), cpu, cuda, cuda:1 ..."),
        click.option("--threads", type=int, default=None, help="CPU threads for torch."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(kw: dict[str, Any]) -> dict[str, Any]:
    """What the user set on the command line, as training settings (None: not set)."""
    from .errors import ConfigError
    from .sources import parse_options

    scales = kw["prior_scales"]
    try:
        prior_scales = [float(s) for s in scales.split(",")] if scales else None
    except ValueError:
        raise ConfigError(f"--prior-scales must be comma-separated numbers; got "
                          f"{scales!r}.") from None
    settings = {k: kw[k] for k in (
        "beta", "latent_dim", "likelihood", "architecture", "prior", "learn_prior", "skip",
        "skip_gate", "schedule", "warmup_epochs", "cycle_epochs", "capacity",
        "capacity_epochs", "gamma", "free_bits", "epochs", "batch_size", "lr",
        "val_fraction", "patience", "keep", "grad_clip", "seed", "checkpoint_every",
        "device", "threads")}
    settings["prior_scales"] = prior_scales
    settings["prior_options"] = parse_options(kw["prior_option"]) or None
    settings["tc_beta"] = kw["tc_beta"]
    settings["tc_estimator"] = kw["tc_estimator"] if kw["tc_beta"] is not None else None
    settings["likelihood_options"] = parse_options(kw["likelihood_option"]) or None
    settings["architecture_options"] = parse_options(kw["arch_option"]) or None
    settings["progress"] = not kw["quiet"]
    return settings


def _configs(kw: dict[str, Any], data) -> tuple[Any, Any, Any, dict[str, Any]]:
    from .settings import configs_for

    return configs_for(data, _settings(kw))


def _echo_from_domain(data, from_domain: dict[str, Any]) -> None:
    if from_domain and _is_main_process():
        text = ", ".join(f"{k}={v}" for k, v in from_domain.items())
        click.echo(f"from the {data.domain} domain's defaults: {text} (set any of them to "
                   f"override)", err=True)


def _load(kw: dict[str, Any]):
    from .sources import load_data, parse_options

    options = parse_options(kw["data_options"])
    if kw.get("batch_key") is not None:
        options["batch_key"] = kw["batch_key"]
    return load_data(kw["data"], loader=kw["loader"], options=options)


# --- train -----------------------------------------------------------------------------
@main.command(short_help="Fit a β-VAE to DATA and write a run directory.")
@_training_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory to write (must be new or empty).")
@click.option("--resume", is_flag=True, help="Continue the fit checkpointed in --out.")
@click.option("--overwrite", is_flag=True, help="Replace the run in --out.")
@click.option("--beta-range", default=None, metavar="LO,HI", help="Fit one β-conditioned "
              "model for every β in [LO, HI] (multi-rate VAE; --beta is then unused).")
@_friendly_errors
def train(out_dir: str, resume: bool, overwrite: bool, beta_range: str | None,
          **kw: Any) -> None:
    """Fit a β-VAE to DATA (a dataset name or a path) and write a run directory.

    Settings you leave unset take the domain's suggested defaults (printed, and recorded
    in config.json under "from_domain"), then the core's. Writes config.json,
    model.safetensors (the kept weights, see --keep), history.csv (per epoch: rate,
    distortion, ELBO, β in force, KL per latent dimension), report.json and checkpoint/
    (for --resume). Launch with `torchrun --nproc-per-node N -m betavae_core.cli train
    ...` for data-parallel training.
    """
    from .trainer import fit

    t0 = time.perf_counter()
    span = _beta_range(beta_range)
    data, source = _load(kw)
    model_config, train_config, objective, from_domain = _configs(kw, data)
    _echo_from_domain(data, from_domain)
    result = fit(data, model_config, train_config, objective, out_dir=out_dir, resume=resume,
                 overwrite=overwrite, source=source, from_domain=from_domain,
                 beta_range=span)
    if result.out_dir is None or not _is_main_process():
        return
    best = result.report.get("best") or {}
    click.echo(
        f"fit {data.domain} ({len(data)} items): {result.stopped}; kept epoch "
        f"{result.best_epoch} ({train_config.keep}): validation rate "
        f"{best.get('val_rate', float('nan')):.3f} nats, "
        f"distortion {best.get('val_distortion', float('nan')):.3f} nats, active units "
        f"{result.report.get('active_units', '?')} (by Var E[z|x] alone: "
        f"{result.report.get('active_units_variance', '?')}) "
        f"({time.perf_counter() - t0:.1f} s)."
    )
    click.echo(f"wrote {result.out_dir}/: config.json, model.safetensors, history.csv, "
               f"report.json. Next: betavae evaluate {result.out_dir}")


def _beta_range(text: str | None) -> tuple[float, float] | None:
    from .errors import ConfigError

    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--beta-range must be two comma-separated numbers LO,HI; got "
                          f"{text!r}.") from None
    return lo, hi


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


# --- evaluate --------------------------------------------------------------------------
def _eval_options(pairs: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """`("crystal_generation.n=500",)` -> {"crystal_generation": {"n": 500}}."""
    from .errors import ConfigError
    from .sources import parse_options

    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        name, dot, rest = pair.partition(".")
        if not dot or not name or "=" not in rest:
            raise ConfigError(f"--eval-option {pair!r} is not of the form NAME.KEY=VALUE.")
        out.setdefault(name, {}).update(parse_options([rest]))
    return out


@main.command(short_help="Run every applicable evaluation on a fitted run.")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--data", default=None, help="Evaluate on this dataset or path instead of the "
              "run's held-out split.")
@click.option("--loader", default=None, help="Loader for --data.")
@click.option("-o", "--option", "data_options", multiple=True, metavar="KEY=VALUE")
@click.option("--only", multiple=True, help="Run only this evaluation (repeatable).")
@click.option("-e", "--eval-option", "eval_options", multiple=True, metavar="NAME.KEY=VALUE",
              help="Option of one evaluation (repeatable), e.g. -e posterior.threshold=0.05.")
@_friendly_errors
def evaluate(run_dir: str, data: str | None, loader: str | None,
             data_options: tuple[str, ...], only: tuple[str, ...],
             eval_options: tuple[str, ...]) -> None:
    """Run every applicable evaluation (core and plugins) on a fitted run.

    Updates RUN_DIR/report.json (section "evaluation") and writes PNG plots into
    RUN_DIR/plots/. `betavae plugins` lists the evaluations; each one's options are in
    `betavae plugins --json`.
    """
    from .evaluation import evaluate_run
    from .sources import load_data, parse_options

    options = _eval_options(eval_options)
    domain_data = source = None
    if data is not None:
        domain_data, source = load_data(data, loader=loader, options=parse_options(data_options))
    section = evaluate_run(run_dir, domain_data, source, names=list(only) or None,
                           options=options)
    for name, entry in section["results"].items():
        shown = {k: v for k, v in entry.items() if isinstance(v, (int, float)) and k != "seconds"}
        text = ", ".join(f"{k}={v:.4g}" for k, v in list(shown.items())[:8])
        click.echo(f"{name:<18} {text}")
    click.echo(f"wrote {Path(run_dir) / 'report.json'} and plots in {Path(run_dir) / 'plots'}/")


# --- sweep -----------------------------------------------------------------------------
@main.command(short_help="Fit one model per β; write the rate–distortion curve.")
@_training_options
@click.option("--betas", required=True, help="Comma-separated β values, e.g. 0.25,1,4,16.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Sweep folder to write (must be new or empty).")
@click.option("--resume", is_flag=True, help="Finish the β values not yet done in --out "
              "(finished ones are kept, an interrupted one continues).")
@click.option("--overwrite", is_flag=True, help="Replace the sweep in --out.")
@click.option("--one-fit", is_flag=True, help="Fit one β-conditioned model over [min, max] "
              "of --betas (multi-rate VAE) and read the curve from it.")
@_friendly_errors
def sweep(betas: str, out_dir: str, resume: bool, overwrite: bool, one_fit: bool,
          **kw: Any) -> None:
    """Fit one model per β and write the rate–distortion curve (rd.csv, rd.png).

    Each fit goes to OUT/beta_<β>/; with --one-fit, one β-conditioned fit goes to
    OUT/one_fit/ and every β is read from it. A non-empty OUT is refused unless
    --resume (finish an interrupted sweep) or --overwrite. "active" counts a latent
    dimension only if Var E[z|x] > 0.01 and its KL > 0.1 nats ("var>0.01": the first
    rule alone).
    """
    from .errors import ConfigError
    from .sweeps import sweep as run_sweep

    try:
        beta_values = [float(b) for b in betas.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--betas must be comma-separated numbers; got {betas!r}.") from None
    data, source = _load(kw)
    model_config, train_config, objective, from_domain = _configs(kw, data)
    _echo_from_domain(data, from_domain)
    rows = run_sweep(data, beta_values, out_dir, model_config, train_config, objective, source,
                     resume=resume, overwrite=overwrite, one_fit=one_fit)
    click.echo(f"{'beta':>8} {'rate':>9} {'distortion':>11} {'active':>7} {'var>0.01':>8} "
               f"{'offdiag':>8}")
    for r in rows:
        click.echo(f"{r['beta']:>8g} {r['rate']:>9.3f} {r['distortion']:>11.3f} "
                   f"{r['active_units']:>7d} {r['active_units_variance']:>8d} "
                   f"{r['offdiag_mass']:>8.4f}")
    click.echo(f"wrote {Path(out_dir) / 'rd.csv'} and {Path(out_dir) / 'rd.png'}")


# --- generate --------------------------------------------------------------------------
@main.command(short_help="Sample the prior, decode, hand to the domain's generator.")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-n", "n", type=int, default=1000, show_default=True, help="Samples to draw.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="New directory for the candidates (never overwritten).")
@click.option("--generator", default=None, help="Generator plugin (default: the data's own).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-g", "--gen-option", multiple=True, metavar="KEY=VALUE",
              help="Generator option (repeatable).")
@_friendly_errors
def generate(run_dir: str, n: int, out_dir: str, generator: str | None, seed: int,
             gen_option: tuple[str, ...]) -> None:
    """Sample the prior, decode, and hand the result to the domain's generator."""
    from .errors import ConfigError
    from .generation import generate as run_generate
    from .runs import load_run
    from .sources import parse_options

    if n < 1:
        raise ConfigError(f"-n must be >= 1; got {n}.")
    options = parse_options(gen_option)
    run = load_run(run_dir)
    context = run.context(seed=seed, lazy=True)
    report = run_generate(context, n, out_dir, generator=generator, seed=seed,
                          options=options)
    click.echo(json.dumps(report.summary, indent=2, default=str))
    click.echo(f"wrote {len(report.files)} files into {out_dir}/")


if __name__ == "__main__":
    main()
