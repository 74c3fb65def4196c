"""The BKT temperature of the 2D XY model: from the latent, checked by the helicity modulus.

Two independent estimates, each from a universal criterion of the Kosterlitz-Thouless
theory and never from a known T_BKT (the literature 0.8929, Hasenbusch 2005, is drawn on
the plots and printed beside them as a reference only):

- **Helicity modulus (Monte Carlo).** Y(T, L) (`montecarlo.helicity`) jumps from
  2 T_BKT / pi to 0 at T_BKT (Nelson and Kosterlitz 1977). On a finite lattice the jump is
  smoothed, and T*(L), where Y(T, L) = 2T/pi, approaches T_BKT as
  T*(L) = T_BKT + c / (ln L)^2 (the KT correlation length xi ~ exp(b / sqrt(T - T_BKT))
  equals L there). `jump_crossing` finds T*(L); `extrapolate_log` fits the law.
- **Latent.** In the critical phase T <= T_BKT the magnetisation decays as
  |m| ~ L^(-eta(T) / 2), with eta = T / (2 pi Y) rising to exactly 1/4 at T_BKT. A
  beta-VAE with two latents learns the magnetisation's direction, |z| growing with |m|.
  One model encodes every size: a configuration of side l is tiled up to the model's L
  (a periodic l-lattice repeated (L/l)^2 times is a periodic L-lattice with the same
  magnetisation and bond energies), so |z| is the same function of the configuration at
  every l; a model trained on tiled lattices (the `xy2d_tiled` dataset) has seen them.
  The magnitude read off a posterior mean is, by default, the |m| the decoder expects
  there (`decoded_magnetization`: the decoder is the latent's own map back to spins, so
  the reading is in the units of |m|; raw |z| is a slightly non-linear function of |m|,
  which biases the ratios below). For each pair of sizes,
  eta(T) = -2 ln(<o>_b / <o>_a) / ln(b / a) crosses 1/4 at T*(a, b). The latent's
  estimate combines the pairs (`combine`: inverse-variance mean, bootstrap error). It is
  not extrapolated in L: T*(a, b) of this criterion drifts little, because the log
  correction m ~ L^(-1/8) (ln L)^(1/16) at T_BKT offsets the finite-size shift, so the
  (ln L)^-2 law over-corrects (Monte Carlo |m| under the same estimator shows it: its
  pairs of 8 - 32 lie within 2 % of the reference, their extrapolation 4 % below; the
  extrapolation is still reported). The same estimator on Monte Carlo |m| is reported
  beside the latent's, so a gap between the two is the latent's, not the estimator's.
  Why not the latent's Binder cumulant or susceptibility peak: BKT Binder curves merge
  rather than cross below T_BKT, and the susceptibility peak sits above T = 1.1 at
  L <= 32 and drifts slowly; eta = 1/4 is a universal criterion at T_BKT itself.

`bkt` is the registered evaluation: it samples (and caches) Monte Carlo ensembles of the
requested sizes on a temperature grid around the transition, runs both estimates and
returns them with a figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from matplotlib.figure import Figure

import betavae_core as bv
from betavae_core import ConfigError, DataError, DomainData, EvaluationResult, RunContext

from .montecarlo.helicity import HelicityCurve, helicity_curve
from .readout import decoded_magnetization as site_decoded
from .scaling import weighted_line

#: Hasenbusch (2005), J. Phys. A 38, 5869: a reference for reports, never an input.
T_BKT_REFERENCE = 0.8929
#: eta at T_BKT (Kosterlitz 1974): the universal criterion of the latent estimate.
ETA_BKT = 0.25
MIN_SIZES = 3  # an extrapolation fits two parameters and keeps one degree of freedom
MIN_TEMPERATURES = 4  # per size, for a crossing
FIT_POINTS = 6  # grid points around a sign change that the local line is fitted to
READOUTS = ("decoded", "norm")


@dataclass
class Crossing:
    """Where a curve meets its criterion for one size (or pair of sizes); temperature
    None when it does not within the range, `note` saying why."""

    sizes: tuple[int, ...]
    temperature: float | None
    error: float | None
    note: str = ""
    replica_roots: np.ndarray | None = None  # per bootstrap replica, NaN where none

    @property
    def L_eff(self) -> float:
        return math.sqrt(math.prod(self.sizes)) if len(self.sizes) == 2 else self.sizes[0]


@dataclass
class LogExtrapolation:
    """T*(L) = T_BKT + c / (ln L)^2 fitted to crossings (t_bkt None: too few; see note)."""

    t_bkt: float | None
    error: float | None
    slope: float | None
    used: list[tuple[int, ...]] = field(default_factory=list)
    note: str = ""


def check_sizes(sizes: Any, what: str) -> list[int]:
    """Distinct lattice sides, at least MIN_SIZES of them, sorted."""
    try:
        items = sizes if isinstance(sizes, (list, tuple)) else str(sizes).split(",")
        out = sorted({int(s) for s in items})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: sizes must be lattice sides like 8,16,32; got "
                          f"{sizes!r}.") from exc
    if len(out) < MIN_SIZES:
        raise ConfigError(f"{what}: the T_BKT + c/(ln L)^2 extrapolation needs at least "
                          f"{MIN_SIZES} lattice sizes; got {out}. Add sizes (e.g. 8,16,32).")
    if out[0] < 4 or any(s % 2 for s in out):
        raise ConfigError(f"{what}: sizes must be even lattice sides >= 4; got {out}.")
    return out


def _check_grid(t: np.ndarray, what: str) -> None:
    if t.size < MIN_TEMPERATURES:
        raise DataError(f"{what}: a crossing needs at least {MIN_TEMPERATURES} temperatures; "
                        f"got {t.size} ({np.round(t, 4).tolist()}). Sample a finer grid.")


def _split(d: np.ndarray) -> int | None:
    """Index k of the sign change of d between k and k + 1 that best splits d into
    positive (before) and non-positive (after) points: robust to noise that makes d
    change sign several times near the crossing. None when d never goes + to -."""
    change = np.flatnonzero((d[:-1] > 0) & (d[1:] <= 0))
    if not change.size:
        return None
    pos, neg = np.cumsum(d > 0), np.cumsum((d <= 0)[::-1])[::-1]
    score = [pos[k] + neg[k + 1] for k in change]
    return int(change[int(np.argmax(score))])


def _window(k: int, n: int) -> slice:
    lo = max(0, min(k + 1 - FIT_POINTS // 2, n - FIT_POINTS))
    return slice(lo, lo + FIT_POINTS)


def _line_root(t: np.ndarray, d: np.ndarray, sl: slice) -> float | None:
    """Root of the least-squares line through (t, d)[sl]; None unless it falls, with a
    negative slope, inside those points' range."""
    slope, icept = np.polyfit(t[sl], d[sl], 1)
    if slope >= 0:
        return None
    root = -icept / slope
    return float(root) if t[sl][0] <= root <= t[sl][-1] else None


def crossing(t: np.ndarray, d: np.ndarray, replicas: np.ndarray, sizes: tuple[int, ...],
             label: str) -> Crossing:
    """Where d(t) = curve - criterion (positive below the transition) changes sign: the
    root of a line through the FIT_POINTS points around the best sign change, with the
    spread of the bootstrap replicas' roots (same points) as error. Outside the range:
    None, and a note saying on which side the crossing lies."""
    _check_grid(t, label)
    k = _split(d)
    root = None if k is None else _line_root(t, d, _window(k, t.size))
    if root is None:
        side = ("above the highest" if np.all(d > 0) else "below the lowest"
                if np.all(d <= 0) else "not resolved at any")
        return Crossing(sizes, None, None,
                        f"{label}: no crossing in [{t[0]:.4g}, {t[-1]:.4g}]; it lies {side} "
                        f"temperature sampled. Widen or refine the grid.")
    sl = _window(k, t.size)
    every = np.array([np.nan if r is None else r
                      for r in (_line_root(t, rep, sl) for rep in replicas)])
    roots = every[np.isfinite(every)]
    if roots.size < max(3, 0.8 * len(replicas)):
        return Crossing(sizes, None, None,
                        f"{label}: a crossing near {root:.4g} appears in only "
                        f"{roots.size}/{len(replicas)} bootstrap replicas; sample more.")
    return Crossing(sizes, root, float(roots.std(ddof=1)), replica_roots=every)


def combine(found: list[Crossing]) -> Crossing:
    """Inverse-variance mean of the pairs' crossings (each pair's bootstrap error); its
    error is the spread of the same mean over the shared bootstrap replicas, which keeps
    the pairs' correlation (they share sizes). None when no pair crossed."""
    ok = [c for c in found if c.temperature is not None]
    if not ok:
        return Crossing(tuple(sorted({s for c in found for s in c.sizes})), None, None,
                        "no pair of sizes crossed 1/4 in the range")
    w = np.array([1.0 / max(c.error, 1e-6) ** 2 for c in ok])
    w /= w.sum()
    reps = np.stack([c.replica_roots for c in ok]) if all(
        c.replica_roots is not None for c in ok) else None
    per_rep = None if reps is None else (w[:, None] * reps).sum(axis=0)
    err = (None if per_rep is None or np.isfinite(per_rep).sum() < 3
           else float(np.nanstd(per_rep, ddof=1)))
    left = [c.sizes for c in found if c.temperature is None]
    return Crossing(tuple(sorted({s for c in ok for s in c.sizes})),
                    float(w @ np.array([c.temperature for c in ok])), err,
                    f"pairs without a crossing, left out: {left}" if left else "")


def jump_crossing(curve: HelicityCurve) -> Crossing:
    """T*(L) where the helicity modulus meets the universal jump line 2T/pi."""
    line = 2.0 * curve.control / np.pi
    return crossing(curve.control, curve.value - line, curve.replicates - line,
                    (curve.L,), f"Y = 2T/pi at L = {curve.L}")


def extrapolate_log(found: list[Crossing]) -> LogExtrapolation:
    """Weighted fit of T*(L) = T_BKT + c / (ln L_eff)^2 to the crossings found (at least
    MIN_SIZES of distinct L_eff); the error is scaled by the reduced chi^2 when above 1."""
    ok = [c for c in found if c.temperature is not None]
    missing = [c.sizes for c in found if c.temperature is None]
    note = f"left out (no crossing): {missing}" if missing else ""
    if len({c.L_eff for c in ok}) < MIN_SIZES:
        return LogExtrapolation(None, None, None, [c.sizes for c in ok],
                                (f"the extrapolation needs crossings at {MIN_SIZES} or more "
                                 f"sizes; found {len(ok)}. " + note).strip())
    x = np.array([1.0 / math.log(c.L_eff) ** 2 for c in ok])
    y = np.array([c.temperature for c in ok])
    e = np.array([c.error or 0.0 for c in ok])
    e = np.where(e > 0, e, max(float(e.max()), 1e-4))
    t_bkt, t_bkt_err, slope = weighted_line(x, y, e)
    return LogExtrapolation(t_bkt, t_bkt_err, slope, [c.sizes for c in ok], note)


@dataclass
class MeanCurves:
    """<o>(T) per lattice side for a non-negative observable o (|z| or |m|), with
    bootstrap replicas (n_boot, n_temperatures) per side."""

    control: np.ndarray
    mean: dict[int, np.ndarray]
    replicas: dict[int, np.ndarray]


def mean_curves(values: np.ndarray, control: np.ndarray, sizes: np.ndarray, *,
                n_boot: int = 200, seed: int = 0) -> MeanCurves:
    """<o> per (L, T) cell, every size on the same temperature grid."""
    rng = np.random.default_rng(seed)
    grid = np.unique(control)
    mean, reps = {}, {}
    for L in np.unique(sizes).tolist():
        m, r = np.empty(grid.size), np.empty((n_boot, grid.size))
        for k, t in enumerate(grid):
            v = values[(sizes == L) & (control == t)]
            if v.size < 2:
                raise DataError(f"<|o|> at L = {L}, T = {t:g} needs at least 2 "
                                f"configurations; got {v.size}.")
            m[k] = v.mean()
            r[:, k] = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
        mean[int(L)], reps[int(L)] = m, r
    return MeanCurves(grid, mean, reps)


def _eta(mean_a: np.ndarray, mean_b: np.ndarray, a: int, b: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -2.0 * np.log(mean_b / mean_a) / math.log(b / a)


def eta_curves(curves: MeanCurves) -> dict[tuple[int, int], np.ndarray]:
    """eta(T) of every pair of sizes (a < b)."""
    return {(a, b): _eta(curves.mean[a], curves.mean[b], a, b)
            for a, b in combinations(sorted(curves.mean), 2)}


def eta_crossings(curves: MeanCurves, label: str) -> list[Crossing]:
    """T*(a, b) where eta(T) of each pair of sizes reaches 1/4."""
    out = []
    for (a, b), eta in eta_curves(curves).items():
        reps = _eta(curves.replicas[a], curves.replicas[b], a, b)
        out.append(crossing(curves.control, ETA_BKT - eta, ETA_BKT - reps, (a, b),
                            f"{label}: eta = 1/4 for L = {a}, {b}"))
    return out


def tile(configs: np.ndarray, L: int) -> np.ndarray:
    """(n, l, l) periodic configurations repeated to (n, L, L); l must divide L."""
    side = configs.shape[-1]
    if L % side:
        raise ConfigError(f"bkt encodes a lattice of side {side} by tiling it up to the "
                          f"model's L = {L}, so each size must divide {L}; got {side}.")
    reps = L // side
    return np.tile(configs, (1, reps, reps))


def _summary(c: Crossing) -> dict:
    return {"sizes": list(c.sizes), "temperature": c.temperature, "error": c.error,
            "note": c.note or None}


def _extrapolation_summary(fit: LogExtrapolation) -> dict:
    rel = (None if fit.t_bkt is None
           else abs(fit.t_bkt - T_BKT_REFERENCE) / T_BKT_REFERENCE)
    return {"t_bkt": fit.t_bkt, "error": fit.error, "slope": fit.slope,
            "used": [list(s) for s in fit.used], "note": fit.note or None,
            "rel_error_vs_reference": rel}


def relative_gap(a: float | None, b: float | None) -> float | None:
    """|a - b| / b, None when either is missing."""
    return None if a is None or b is None else abs(a - b) / b


def is_xy(data: DomainData) -> bool:
    """Whether `bkt` applies: XY configurations of a side sizes=auto can use (L >= 16,
    divisible by 8)."""
    L = int(data.attrs.get("L", 0))
    return data.attrs.get("model") == "xy" and L >= 16 and L % 8 == 0


def latent_norm(model: bv.BetaVAE, mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """|z| over the two most informative latents (largest mean KL), centred on their
    mean: the magnetisation is a direction, so it needs two."""
    if mu.shape[1] < 2:
        raise ConfigError(f"bkt reads the XY magnetisation's direction from 2 latents; the "
                          f"model has latent_dim={mu.shape[1]}. Train with latent_dim=2.")
    import torch

    kl = model.kl_per_dim(torch.as_tensor(mu, dtype=torch.float32).to(model.device),
                          torch.as_tensor(logvar, dtype=torch.float32).to(model.device))
    dims = np.sort(np.argsort(-kl.mean(0).cpu().numpy())[:2])
    z = mu[:, dims] - mu[:, dims].mean(axis=0)
    return np.hypot(z[:, 0], z[:, 1])


def decoded_magnetization(model: bv.BetaVAE, mu: np.ndarray) -> np.ndarray:
    """|m| the von Mises decoder expects at each posterior mean (`readout`, shared with
    the Ising and phi^4 finite-size scaling): the latent read in the units of |m|."""
    if getattr(model.config, "likelihood", None) != "von_mises":
        raise ConfigError(f"bkt readout=decoded needs the von_mises decoder; the model has "
                          f"{getattr(model.config, 'likelihood', None)!r}. Use readout=norm.")
    return site_decoded(model, mu)


def _tiled_data(configs: np.ndarray, L: int) -> DomainData:
    """Configurations tiled to side L as DomainData the model can encode."""
    import torch

    return DomainData(x=torch.as_tensor(tile(configs, L), dtype=torch.float32),
                      domain="fields", likelihood="von_mises",
                      architecture="lattice_conv_angles")


def _ensembles(sizes: list[int], temps: list[float], samples: int, seed: int) -> dict:
    """Monte Carlo XY ensembles per size (cached like the xy2d dataset's)."""
    from . import montecarlo as mc
    from .cache import cached_ensemble

    out = {}
    for L in sizes:
        params = {"L": L, "temperatures": temps, "samples": samples, "seed": seed}
        out[L] = cached_ensemble("xy", params, lambda L=L: mc.sample_xy(
            L, temps, samples, seed=seed))
    return out


def _grid(t_min: float, t_max: float, n: int) -> list[float]:
    if int(n) < MIN_TEMPERATURES:
        raise ConfigError(f"bkt: a crossing needs at least {MIN_TEMPERATURES} temperatures; "
                          f"got n_temperatures={n}.")
    if not 0 < float(t_min) < float(t_max):
        raise ConfigError(f"bkt: need 0 < t_min < t_max; got [{t_min}, {t_max}].")
    return [round(float(v), 6) for v in np.linspace(float(t_min), float(t_max), int(n))]


def default_sizes(model_L: int) -> list[int]:
    """L/4, L/2 and L of the model's side L (each even, >= 4, dividing L)."""
    if model_L % 8 or model_L < 16:
        raise ConfigError(f"bkt: sizes=auto takes L/4, L/2, L of the model's L, which needs L "
                          f"divisible by 8 and >= 16; got L = {model_L}. Pass sizes=... "
                          f"(each dividing {model_L}).")
    return [model_L // 4, model_L // 2, model_L]


def bkt(run: RunContext, sizes: str = "auto", t_min: float = 0.8, t_max: float = 1.1,
        n_temperatures: int = 13, samples: int = 200, seed: int = 1, n_boot: int = 200,
        readout: str = "decoded") -> EvaluationResult:
    """T_BKT from the latent (eta = 1/4 for each pair of sizes, combined; one model, tiled
    inputs) beside the
    helicity modulus' universal jump (Monte Carlo) and Monte Carlo |m| under the latent's
    estimator; every estimate extrapolated with T_BKT + c/(ln L)^2. `readout` is how a
    posterior mean becomes a magnitude: "decoded" (the |m| the decoder expects there,
    `decoded_magnetization`) or "norm" (|z| of the two most informative latents)."""
    if readout not in READOUTS:
        raise ConfigError(f"bkt: readout must be one of {READOUTS}; got {readout!r}.")
    model_L = int(run.heldout.attrs.get("L", run.heldout.x.shape[-1]))
    size_list = (default_sizes(model_L) if str(sizes) == "auto"
                 else check_sizes(sizes, "bkt"))
    for s in size_list:
        tile(np.zeros((1, s, s), np.float32), model_L)  # every size must divide model L
    temps = _grid(t_min, t_max, n_temperatures)
    ens = _ensembles(size_list, temps, int(samples), int(seed))
    helicity = {L: helicity_curve(e.configs, e.control, n_boot=n_boot, seed=seed)
                for L, e in ens.items()}
    jumps = [jump_crossing(helicity[L]) for L in size_list]
    side = np.concatenate([np.full(len(e), L) for L, e in ens.items()])
    control = np.concatenate([e.control for e in ens.values()])
    mu, logvar = [], []
    for e in ens.values():
        m, v = bv.encode(run.model, _tiled_data(e.configs, model_L))
        mu.append(m)
        logvar.append(v)
    mu, logvar = np.concatenate(mu), np.concatenate(logvar)
    z_norm = (decoded_magnetization(run.model, mu) if readout == "decoded"
              else latent_norm(run.model, mu, logvar))
    m_abs = np.concatenate([np.abs(e.magnetization) for e in ens.values()])
    latent = mean_curves(z_norm, control, side, n_boot=n_boot, seed=seed)
    magnet = mean_curves(m_abs, control, side, n_boot=n_boot, seed=seed)
    cross = {"latent": eta_crossings(latent, "latent |z|"),
             "mc_magnetization": eta_crossings(magnet, "Monte Carlo |m|")}
    combined = {k: combine(v) for k, v in cross.items()}
    fits = {"helicity": extrapolate_log(jumps),
            **{k: extrapolate_log(v) for k, v in cross.items()}}
    metrics = {
        "model_L": model_L, "sizes": size_list, "temperatures": temps,
        "samples": int(samples), "seed": int(seed), "readout": readout,
        "reference_t_bkt": T_BKT_REFERENCE,
        "helicity_crossings": [_summary(c) for c in jumps],
        "latent_crossings": [_summary(c) for c in cross["latent"]],
        "mc_magnetization_crossings": [_summary(c) for c in cross["mc_magnetization"]],
        "extrapolated": {k: _extrapolation_summary(f) for k, f in fits.items()},
        "combined": {k: _summary(c) for k, c in combined.items()},
        "latent_estimate": combined["latent"].temperature,
        "latent_vs_helicity": relative_gap(combined["latent"].temperature,
                                           fits["helicity"].t_bkt),
        "latent_vs_reference": relative_gap(combined["latent"].temperature,
                                            T_BKT_REFERENCE),
        "helicity_vs_reference": relative_gap(fits["helicity"].t_bkt, T_BKT_REFERENCE),
        "helicity": {str(L): {"value": c.value.tolist(), "error": c.error.tolist()}
                     for L, c in helicity.items()},
    }
    fig = bkt_figure(helicity, jumps, latent, magnet, cross, fits)
    return EvaluationResult(metrics=metrics, figures={"bkt": fig})


def bkt_figure(helicity: dict[int, HelicityCurve], jumps: list[Crossing],
               latent: MeanCurves, magnet: MeanCurves, cross: dict[str, list[Crossing]],
               fits: dict[str, LogExtrapolation]) -> Figure:
    """Y(T, L) with 2T/pi; eta(T) of the latent and of |m| per pair with 1/4; T*(L)
    against 1/(ln L)^2 with the fits (the reference T_BKT drawn, never fitted)."""
    fig = Figure(figsize=(13.5, 3.8))
    ax = fig.add_subplot(1, 3, 1)
    for (L, c), j in zip(helicity.items(), jumps, strict=True):
        line = ax.errorbar(c.control, c.value, c.error, fmt="o-", ms=3, label=f"L = {L}")
        if j.temperature is not None:
            ax.axvline(j.temperature, color=line[0].get_color(), ls=":", lw=1)
    t = next(iter(helicity.values())).control
    ax.plot(t, 2 * t / np.pi, "k--", label="2T/π")
    ax.set(xlabel="temperature", ylabel="helicity modulus Υ", title="Monte Carlo Υ(T, L)")
    ax.legend(frameon=False, fontsize=7)
    ax = fig.add_subplot(1, 3, 2)
    for name, curves, style in (("latent", latent, "o-"), ("|m|", magnet, "s--")):
        for (a, b), eta in eta_curves(curves).items():
            ax.plot(curves.control, eta, style, ms=3, label=f"{name} L = {a}, {b}")
    ax.axhline(ETA_BKT, color="k", lw=1, label="η = 1/4")
    ax.set(xlabel="temperature", ylabel="η from <|o|>(L)", title="latent vs |m|: η(T)")
    ax.legend(frameon=False, fontsize=6)
    ax = fig.add_subplot(1, 3, 3)
    groups = {"helicity": jumps, **cross}
    for name, found in groups.items():
        ok = [c for c in found if c.temperature is not None]
        x = [1 / math.log(c.L_eff) ** 2 for c in ok]
        pts = ax.errorbar(x, [c.temperature for c in ok], [c.error or 0 for c in ok],
                          fmt="o", ms=4, label=name)
        fit = fits[name]
        if fit.t_bkt is not None:
            xs = np.linspace(0, max(x), 20)
            ax.plot(xs, fit.t_bkt + fit.slope * xs, color=pts[0].get_color(), lw=1,
                    label=f"{name} → {fit.t_bkt:.3f}")
    ax.axhline(T_BKT_REFERENCE, color="k", lw=1, ls=":", label=f"reference {T_BKT_REFERENCE}")
    ax.set(xlabel="1 / (ln L)²", ylabel="T*(L)", title="extrapolation T_BKT + c/(ln L)²")
    ax.legend(frameon=False, fontsize=6)
    fig.tight_layout()
    return fig


def load_xy2d_tiled(L: int = 32, sizes: str = "auto", t_min: float = 0.4, t_max: float = 1.6,
                    n_temperatures: int = 13, samples: int = 200, seed: int = 0
                    ) -> DomainData:
    """xy2d configurations of several sizes (sizes=auto: L/4, L/2, L), each tiled up to
    side L, in one dataset: a model trained on it has seen tiled lattices, so its latent
    reads every size `bkt` tiles in the same units. Metadata "L" is each item's own side."""
    from . import montecarlo as mc
    from .datasets import ensemble_data, load_xy2d

    size_list = default_sizes(int(L)) if str(sizes) == "auto" else check_sizes(sizes, "xy2d_tiled")
    parts = []
    for s in size_list:
        tile(np.zeros((1, s, s), np.float32), int(L))
        parts.append(load_xy2d(L=s, t_min=t_min, t_max=t_max, n_temperatures=n_temperatures,
                               samples=samples, seed=seed))
    names = parts[0].factor_names
    factors = np.concatenate([p.factors for p in parts])
    ens = mc.Ensemble(
        model="xy", configs=np.concatenate([tile(p.x.numpy(), int(L)) for p in parts]),
        control=factors[:, 0], energy=factors[:, names.index("energy")],
        magnetization=factors[:, names.index("magnetization")], tau={}, spacing={},
        params={"sizes": size_list, "L": int(L), "parts": [p.attrs["params"] for p in parts]},
        control_name="temperature")
    data = ensemble_data(ens, "betavae_fields.xy2d_tiled", {"sizes": size_list})
    data.metadata["L"] = np.concatenate([np.full(len(p), p.attrs["L"]) for p in parts])
    return data
