"""Finite-size scaling from one observable per configuration, with no known critical values.

The observable is whatever the caller reads off each configuration: the most informative
latent coordinate of a model trained on several lattice sizes, or |m| from Monte Carlo.
With its control value (temperature, or kappa) and lattice side L per configuration:

- `binder_curves`: U_L = 1 - <o^4> / (3 <o^2>^2) per L and control value, with bootstrap
  errors (configurations resampled within each (L, control) cell);
- `crossings`: where U_L and U_L' cross, for each pair of sizes: the region is where
  U_L - U_L' changes sign with significant differences (beyond z_min bootstrap errors)
  on both sides, found over the whole range with no hint of where, and the crossing a
  weighted polynomial root through the grid values there (a pair whose difference never
  changes sign beyond its errors gets `control=None` and a note saying so, never a value);
- `extrapolate_crossings`: the crossings to L -> oo, T*(L, L') = Tc + a L_eff^(-1/nu),
  L_eff = sqrt(L L'), nu from the collapse;
- `collapse`: Tc and nu fitted together by making U_L against (T - Tc) L^(1/nu) fall on one
  curve (the pairwise-interpolation quality of Houdayer and Hartmann 2004), inside a
  scaling window |T - Tc| / Tc L^(1/nu) <= 1 derived from the data (started at the
  crossings, nu from the slopes there, iterated with the fit), with bootstrap errors;
- `analyse`: the three in their order (crossings -> collapse -> extrapolation), what
  every caller runs;
- `binder_figure`, `collapse_figure`: the plots.

U does not depend on the observable's scale, so a latent works as well as m. Universal
values (U* = 0.61069 for 2D Ising, Onsager's Tc, nu = 1) are never inputs here: callers may
draw them on the figures as references.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import minimize

from betavae_core import ConfigError, DataError

MIN_SIZES = 2
MIN_CONTROLS = 4  # per size, shared by the sizes a crossing compares
MIN_PER_CELL = 8  # configurations per (L, control) for a Binder cumulant
NU_RANGE = (0.2, 5.0)  # the collapse searches nu here, and Tc inside the data's range


@dataclass
class BinderCurves:
    """U_L(control) per lattice side L with bootstrap errors and replicas."""

    control_name: str
    sizes: list[int]
    control: dict[int, np.ndarray]
    binder: dict[int, np.ndarray]
    error: dict[int, np.ndarray]
    replicas: dict[int, np.ndarray]  # (n_boot, n_control) per L
    counts: dict[int, np.ndarray]


@dataclass
class Crossing:
    """Where U_a and U_b cross (control None: no crossing in the range; note says why)."""

    sizes: tuple[int, int]
    control: float | None
    error: float | None
    found_fraction: float  # share of bootstrap replicas that cross near the same point
    note: str = ""
    shift: float | None = None  # root of one degree higher minus control (None: no root)
    unsettled: bool = False  # |shift| > error: the local fit decides the crossing


@dataclass
class CrossingExtrapolation:
    """T*(L, L') = tc + slope * L_eff^(-1/nu) fitted to the crossings found."""

    tc: float | None
    tc_error: float | None
    slope: float | None
    nu: float
    used: list[tuple[int, int]] = field(default_factory=list)
    note: str = ""


@dataclass
class Collapse:
    """Tc and nu that make U_L against (T - Tc) L^(1/nu) one curve."""

    tc: float
    nu: float
    tc_error: float | None
    nu_error: float | None
    quality: float  # mean squared mismatch in units of the errors (about 1: collapsed)
    window: tuple[float, float]  # the control range the fit used, all sizes together
    windows: dict[int, tuple[float, float]] = field(default_factory=dict)  # per L
    scaled_window: float | None = None  # |T - Tc| / |Tc| L^(1/nu) bound, when derived


# --- Binder cumulants -----------------------------------------------------------------


def _check_inputs(values, control, sizes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=np.float64).ravel()
    c = np.asarray(control, dtype=np.float64).ravel()
    s = np.asarray(sizes).ravel()
    if not (v.size == c.size == s.size):
        raise DataError(f"values, control and sizes must have one entry per configuration; "
                        f"got {v.size}, {c.size} and {s.size}.")
    for name, a in (("values", v), ("control", c)):
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            raise DataError(f"{name} is not finite at configuration {int(bad[0])} "
                            f"({bad.size} in all); drop those configurations first.")
    if not np.all(s == np.round(s)) or np.any(s < 2):
        raise DataError(f"sizes must be lattice sides (integers >= 2); got {np.unique(s)[:5]}")
    return v, c, s.astype(np.int64)


def binder_curves(values, control, sizes, *, n_boot: int = 200, seed: int = 0,
                  control_name: str = "temperature") -> BinderCurves:
    """Binder cumulant of `values` per lattice side and control value, bootstrap errors.

    values, control and sizes hold one entry per configuration. Even moments only, so a
    signed observable and its absolute value give the same U; centre a latent on its
    symmetric point first. Needs >= 2 sizes and >= 4 control values per size with
    >= 8 configurations each.
    """
    v, c, s = _check_inputs(values, control, sizes)
    grid_sizes = sorted(int(L) for L in np.unique(s))
    if len(grid_sizes) < MIN_SIZES:
        raise DataError(f"finite-size scaling needs configurations of at least {MIN_SIZES} "
                        f"lattice sizes (3 or more to extrapolate); got L = {grid_sizes}.")
    if int(n_boot) < 10:
        raise ConfigError(f"n_boot must be >= 10 for a bootstrap error; got {n_boot}.")
    rng = np.random.default_rng(seed)
    out = BinderCurves(control_name, grid_sizes, {}, {}, {}, {}, {})
    for L in grid_sizes:
        cv, vv = c[s == L], v[s == L]
        grid = np.unique(cv)
        if grid.size < MIN_CONTROLS:
            raise DataError(
                f"a Binder crossing needs at least {MIN_CONTROLS} {control_name} values per "
                f"lattice size; L = {L} has {grid.size} ({', '.join(f'{g:g}' for g in grid)}).")
        counts = np.array([np.sum(cv == g) for g in grid])
        if counts.min() < MIN_PER_CELL:
            g = grid[int(np.argmin(counts))]
            raise DataError(f"L = {L} at {control_name} = {g:g} has {counts.min()} "
                            f"configurations; a Binder cumulant needs at least {MIN_PER_CELL}.")
        u, reps = zip(*(_binder_boot(vv[cv == g], int(n_boot), rng) for g in grid),
                      strict=True)
        out.control[L], out.binder[L] = grid, np.array(u)
        out.replicas[L] = np.stack(reps, axis=1)
        out.error[L], out.counts[L] = out.replicas[L].std(axis=0, ddof=1), counts
    return out


def _binder(m2: np.ndarray, m4: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - m4 / (3.0 * m2 * m2)


def _binder_boot(x: np.ndarray, n_boot: int, rng: np.random.Generator
                 ) -> tuple[float, np.ndarray]:
    x2 = x * x
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    reps = _binder(x2[idx].mean(axis=1), (x2 * x2)[idx].mean(axis=1))
    return float(_binder(x2.mean(), (x2 * x2).mean())), reps


# --- crossings ------------------------------------------------------------------------


def _common(curves: BinderCurves, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Common control grid of sizes a and b and the indices into each."""
    common, ia, ib = np.intersect1d(curves.control[a], curves.control[b], return_indices=True)
    if common.size < MIN_CONTROLS:
        raise DataError(
            f"crossing L = {a} with L = {b} needs at least {MIN_CONTROLS} {curves.control_name} "
            f"values they share; they share {common.size}. Sample both on one grid.")
    return common, ia, ib


def _weighted_z(d: np.ndarray, err: np.ndarray) -> float:
    """The weighted mean of d in units of its standard error."""
    w = 1.0 / np.maximum(err, 1e-12) ** 2
    return float(np.sum(w * d) / math.sqrt(np.sum(w)))


def _sign_change(t: np.ndarray, d: np.ndarray, err: np.ndarray, widths=(2, 3, 5, 8)
                 ) -> tuple[float, float]:
    """(evidence, split): the strongest significant sign change of d = U_a - U_b.

    For each split between neighbouring grid values, the evidence is the smaller of
    the z-score of the weighted mean of d over the w values left of it (one sign) and
    over the w' values right of it (the other sign), each at its best width in `widths`;
    the split with the largest evidence wins. A real crossing separates differences that
    are significant on both sides (below Tc U_L -> 2/3 with larger L closer, above Tc
    larger L falls faster), however wide the range; a sign change inside the noise
    scores low."""
    best, split = -np.inf, float("nan")
    for k in range(1, t.size):
        left = [_weighted_z(d[max(0, k - w):k], err[max(0, k - w):k]) for w in widths]
        right = [_weighted_z(d[k:k + w], err[k:k + w]) for w in widths]
        score = max(min(-min(left), max(right)), min(max(left), -min(right)))
        if score > best:
            best, split = score, 0.5 * (t[k - 1] + t[k])
    return float(best), split


def _local_root(t: np.ndarray, d: np.ndarray, err: np.ndarray, centre: float, degree: int,
                points: int, refine: int = 2) -> float | None:
    """Root of a weighted polynomial of `degree` through the `points` grid values nearest
    `centre` (re-centred on the root `refine` times): the crossing located where it is,
    since a sigmoid difference is only locally a low polynomial. None when that
    polynomial has no root inside the points' span."""
    root = centre
    for _ in range(refine):
        sel = np.sort(np.argsort(np.abs(t - root), kind="stable")[:points])
        ts = t[sel]
        poly = np.polynomial.Polynomial.fit(ts, d[sel], min(degree, sel.size - 2),
                                            w=1.0 / np.maximum(err[sel], 1e-12))
        # a vanishing top coefficient (an exactly linear d) makes roots() inaccurate
        r = poly.trim(1e-10 * float(np.abs(poly.coef).max())).roots()
        r = r[np.abs(r.imag) < 1e-9].real
        r = r[(r >= ts[0]) & (r <= ts[-1])]
        if not r.size:
            return None
        root = float(r[np.argmin(np.abs(r - root))])
    return root


def _no_crossing(a: int, b: int, t: np.ndarray, d: np.ndarray, err: np.ndarray,
                 evidence: float, z_min: float, points: int) -> Crossing:
    """A pair without a located crossing, with a note saying which case it is."""
    span = f"[{t[0]:g}, {t[-1]:g}]"
    z = d / np.maximum(err, 1e-12)
    above, below = int(np.sum(z >= z_min)), int(np.sum(z <= -z_min))
    if evidence >= z_min:
        why = (f"U_{a} - U_{b} changes sign in {span} ({evidence:.1f} sigma on both sides) "
               f"but no local fit through 4 to {points} values nearest has a root there: no "
               f"crossing can be located; use a finer grid or a lower degree")
    elif above and below:
        why = (f"U_{a} - U_{b} takes both signs in {span} but no sign change has {z_min:g} "
               f"sigma on both sides (best {evidence:.1f}): no crossing can be located; "
               f"sample more configurations")
    elif above or below:
        side = "above" if above else "below"
        why = (f"U_{a} and U_{b} do not cross in {span}: U_{a} stays {side} U_{b} wherever "
               f"they differ beyond the errors, so there is no crossing in the range")
    else:
        why = (f"U_{a} - U_{b} stays within its errors ({z_min:g} sigma) in {span}: the curves "
               f"do not separate, so no crossing can be located; sample more configurations "
               f"or sizes further apart")
    return Crossing((a, b), None, None, 0.0, why)


def crossings(curves: BinderCurves, pairs: list[tuple[int, int]] | None = None,
              degree: int = 2, points: int = 7, min_found: float = 0.5,
              z_min: float = 3.0) -> list[Crossing]:
    """Binder crossings for each pair of sizes (default: every pair, smaller first).

    The crossing region is found from the data alone: the split of the pair's common
    grid where U_a - U_b changes sign with at least `z_min` standard errors on both
    sides (`_sign_change`). The crossing is then the root of a weighted polynomial of
    `degree` through the `points` grid values nearest it (fewer, down to 4, when that
    polynomial has no root there, as on a coarse grid), and its error the spread of
    that root over the bootstrap replicas. A fit one degree higher through the same
    points gives `shift`; a crossing it moves by more than the error is `unsettled`
    and says so in its note (on a steep U, as at L = 48, 7-point quadratic and cubic
    fits differed by 0.6 %). A pair whose difference never changes sign
    beyond its errors, or whose replicas cross near it in fewer than `min_found` of the
    cases, is reported without a value and with a note saying why.
    """
    if pairs is None:
        pairs = list(combinations(curves.sizes, 2))
    missing = sorted({L for p in pairs for L in p} - set(curves.sizes))
    if missing:
        raise ConfigError(f"crossings: no curves for L = {missing}; the data has L = "
                          f"{curves.sizes}.")
    out = []
    for a, b in pairs:
        t, ia, ib = _common(curves, a, b)
        d = curves.binder[a][ia] - curves.binder[b][ib]
        err = np.hypot(curves.error[a][ia], curves.error[b][ib])
        evidence, split = _sign_change(t, d, err)
        root, used = None, points
        for used in range(points, 3, -1) if evidence >= z_min else ():
            root = _local_root(t, d, err, split, degree, used)  # fewer points on coarse grids
            if root is not None:
                break
        if root is None:
            out.append(_no_crossing(a, b, t, d, err, evidence, z_min, points))
            continue
        reps = curves.replicas[a][:, ia] - curves.replicas[b][:, ib]
        found = np.array([r for r in (_local_root(t, rep, err, root, degree, used, 1)
                                      for rep in reps if np.all(np.isfinite(rep)))
                          if r is not None])
        share = found.size / max(1, reps.shape[0])
        if share < min_found or found.size < 3:
            out.append(Crossing((a, b), None, None, share,
                                f"U_{a} and U_{b} cross near {root:.4g} in only {share:.0%} "
                                f"of the bootstrap replicas: within the errors, no crossing "
                                f"can be located; sample more configurations"))
            continue
        error = float(np.std(found, ddof=1))
        out.append(_degree_check(Crossing((a, b), root, error, share), t, d, err, degree, used))
    return out


def _degree_check(c: Crossing, t: np.ndarray, d: np.ndarray, err: np.ndarray, degree: int,
                  points: int) -> Crossing:
    """The crossing with the root of a local fit one degree higher through the same
    points beside it: when the two differ by more than the crossing's bootstrap error,
    the choice of local fit, not the data, decides it (`unsettled`, with a note). Too
    few grid values for a higher degree (the fit is capped at values - 2): not checked."""
    values = min(points, t.size)
    if values - 2 <= degree:
        c.note = (f"not checked against a degree-{degree + 1} local fit: only {values} "
                  f"values near it")
        return c
    alt = _local_root(t, d, err, c.control, degree + 1, points, 1)
    if alt is None:
        c.unsettled = True
        c.note = (f"a degree-{degree + 1} local fit through the same {points} values has no "
                  f"root there: the local fit decides this crossing")
        return c
    c.shift = alt - c.control
    if abs(c.shift) > (c.error or 0.0):
        c.unsettled = True
        c.note = (f"a degree-{degree + 1} local fit through the same {points} values moves it "
                  f"by {c.shift:+.4f}{_relative(c.shift, c.control)}, more than its "
                  f"error {c.error:.4f}: the local fit decides this crossing")
    return c


def _relative(shift: float, value: float) -> str:
    return f" ({abs(shift) / abs(value):.2%})" if value else ""


def extrapolate_crossings(found: list[Crossing], nu: float) -> CrossingExtrapolation:
    """Weighted fit T*(L, L') = Tc + a L_eff^(-1/nu), L_eff = sqrt(L L'), to the crossings
    found (at least two, of distinct L_eff). nu should come from `collapse`, not a table."""
    if not (np.isfinite(nu) and nu > 0):
        raise ConfigError(f"nu must be a finite number > 0; got {nu!r}.")
    ok = [c for c in found if c.control is not None]
    missing = [c.sizes for c in found if c.control is None]
    note = f"pairs without a crossing, left out: {missing}" if missing else ""
    if len({math.sqrt(c.sizes[0] * c.sizes[1]) for c in ok}) < 2:
        return CrossingExtrapolation(None, None, None, nu, [c.sizes for c in ok],
                                     ("extrapolation needs crossings of at least 2 pairs of "
                                      f"sizes; found {len(ok)}. " + note).strip())
    x = np.array([math.sqrt(c.sizes[0] * c.sizes[1]) ** (-1.0 / nu) for c in ok])
    y = np.array([c.control for c in ok])
    e = np.array([c.error if c.error else np.nan for c in ok])
    e = np.where(np.isfinite(e) & (e > 0), e, np.nanmax(np.append(e, 1e-3)))
    icept, icept_err, slope = weighted_line(x, y, e)
    return CrossingExtrapolation(icept, icept_err, slope, nu, [c.sizes for c in ok], note)


def weighted_line(x: np.ndarray, y: np.ndarray, e: np.ndarray) -> tuple[float, float, float]:
    """Weighted least-squares line y = a + b x with errors e: (a, error of a, b). The error
    is scaled up by the reduced chi^2 when that exceeds 1 (scatter beyond the error bars)."""
    design = np.stack([np.ones_like(x), x], axis=1) / e[:, None]
    coef, *_ = np.linalg.lstsq(design, y / e, rcond=None)
    cov = np.linalg.inv(design.T @ design)
    dof = len(x) - 2
    if dof > 0:
        resid = (y - coef[0] - coef[1] * x) / e
        cov = cov * max(1.0, float(resid @ resid) / dof)
    return float(coef[0]), float(math.sqrt(cov[0, 0])), float(coef[1])


# --- data collapse --------------------------------------------------------------------


def _collapse_quality(tc: float, nu: float, data: list[tuple[int, np.ndarray, np.ndarray,
                                                          np.ndarray]],
                      min_overlap: int) -> float:
    """Mean of (U_i - U_L'(x_i))^2 / (err_i^2 + err_L'(x_i)^2) over points i of one size
    that fall inside another size's range of x = (T - Tc) L^(1/nu) (linear interpolation);
    inf when some pair of sizes overlaps in fewer than min_overlap points."""
    if not (nu > 0.05 and np.isfinite(tc)):
        return np.inf
    scaled = [((t - tc) * L ** (1.0 / nu), u, e) for L, t, u, e in data]
    total, count = 0.0, 0
    for i, (xi, ui, ei) in enumerate(scaled):
        for j, (xj, uj, ej) in enumerate(scaled):
            if i == j:
                continue
            inside = (xi >= xj[0]) & (xi <= xj[-1])
            if inside.sum() < min_overlap:
                return np.inf
            u_at = np.interp(xi[inside], xj, uj)
            e_at = np.interp(xi[inside], xj, ej)
            total += float(np.sum((ui[inside] - u_at) ** 2 / (ei[inside] ** 2 + e_at**2)))
            count += int(inside.sum())
    return total / count


def _fit_collapse(data, t_range: tuple[float, float], start: tuple[float, float] | None,
                  min_overlap: int) -> tuple[float, float, float]:
    """(tc, nu, quality): a grid over tc in the range and nu in [0.3, 3] (when no start
    is given), then Nelder-Mead kept inside the range and NU_RANGE."""
    if start is None:
        tcs = np.linspace(t_range[0], t_range[1], 41)[1:-1]
        nus = np.geomspace(0.3, 3.0, 25)
        q = np.array([[_collapse_quality(a, b, data, min_overlap) for b in nus] for a in tcs])
        if not np.isfinite(q).any():
            raise DataError("no (Tc, nu) makes every pair of sizes overlap in scaled "
                            f"{min_overlap} points; sample more control values around the "
                            "transition.")
        i, j = np.unravel_index(int(np.argmin(q)), q.shape)
        start = (float(tcs[i]), float(nus[j]))

    def bounded(p: np.ndarray) -> float:  # Tc inside the data's range, nu in NU_RANGE
        if not (t_range[0] <= p[0] <= t_range[1] and NU_RANGE[0] <= p[1] <= NU_RANGE[1]):
            return np.inf
        return _collapse_quality(p[0], p[1], data, min_overlap)

    res = minimize(bounded, np.array(start), method="Nelder-Mead",
                   options={"xatol": 1e-5, "fatol": 1e-6, "maxiter": 400})
    return float(res.x[0]), float(res.x[1]), float(res.fun)


def slope_nu(curves: BinderCurves, tc: float, points: int = 5) -> float | None:
    """nu from the slopes at tc: |dU_L/dT| grows as L^(1/nu) (a weighted quadratic
    through the `points` grid values nearest tc per size, then a line in log-log);
    None when fewer than 2 sizes give a slope or the slopes do not grow with L."""
    logs, logl = [], []
    for L in curves.sizes:
        t, u, e = curves.control[L], curves.binder[L], curves.error[L]
        sel = np.sort(np.argsort(np.abs(t - tc), kind="stable")[:points])
        if sel.size < 4:
            continue
        poly = np.polynomial.Polynomial.fit(t[sel], u[sel], 2, w=1.0 / np.maximum(e[sel], 1e-12))
        slope = float(poly.deriv()(tc))
        if np.isfinite(slope) and slope != 0:
            logs.append(math.log(abs(slope)))
            logl.append(math.log(L))
    if len(logs) < 2:
        return None
    inverse_nu = float(np.polyfit(logl, logs, 1)[0])
    if not inverse_nu > 0:
        return None
    return float(np.clip(1.0 / inverse_nu, *NU_RANGE))


def _windows(curves: BinderCurves, tc: float, nu: float, bound: float
             ) -> dict[int, tuple[float, float]]:
    """Per L the control range with |T - tc| / |tc| L^(1/nu) <= bound, widened to the
    MIN_CONTROLS + 1 grid values nearest tc when it holds fewer."""
    out = {}
    for L in curves.sizes:
        t = curves.control[L]
        half = bound * abs(tc) * L ** (-1.0 / nu)
        inside = t[np.abs(t - tc) <= half]
        if inside.size < MIN_CONTROLS + 1:
            inside = t[np.sort(np.argsort(np.abs(t - tc), kind="stable")[:MIN_CONTROLS + 1])]
        out[L] = (float(inside.min()), float(inside.max()))
    return out


def collapse(curves: BinderCurves, window: tuple[float, float] | None = None,
             n_boot: int = 40, min_overlap: int = 3, scaled_window: float | None = 1.0,
             found: list[Crossing] | None = None) -> Collapse:
    """Tc and nu from the collapse of U_L(T) on (T - Tc) L^(1/nu), every size together.

    By default the window comes from the data: starting at the median of the Binder
    crossings (`found`, computed when not given; without any, a collapse of the whole
    range) and nu from the slopes there (`slope_nu`), each size keeps the control values
    with |T - Tc| / |Tc| L^(1/nu) <= `scaled_window` (the scaling region: far from Tc
    the curves saturate, and a latent's need not scale at all), and the fit and the
    windows are iterated until the windows stop changing. `window=(low, high)` (or
    scaled_window=None: the whole range) fixes one control range for every size
    instead. When the windows cycle (a collapse that depends on its window: the data
    does not scale), the best fit of the cycle is kept. Errors: the spread of the fit
    over `n_boot` bootstrap replicas.
    """
    lo_all = max(curves.control[L][0] for L in curves.sizes)
    hi_all = min(curves.control[L][-1] for L in curves.sizes)
    if window is not None:
        lo, hi = float(window[0]), float(window[1])
        if not lo < hi:
            raise ConfigError(f"collapse window must be (low, high) with low < high; got "
                              f"{window}.")
        windows = {L: (lo, hi) for L in curves.sizes}
    else:
        windows = {L: (lo_all, hi_all) for L in curves.sizes}
    if scaled_window is not None and not float(scaled_window) > 0:
        raise ConfigError(f"scaled_window must be > 0 (or None: the whole range); got "
                          f"{scaled_window!r}.")

    def cells(u_of, windows):
        data = []
        for L in curves.sizes:
            a, b = windows[L]
            sel = (curves.control[L] >= a) & (curves.control[L] <= b)
            if sel.sum() < MIN_CONTROLS:
                raise DataError(f"a collapse needs at least {MIN_CONTROLS} "
                                f"{curves.control_name} values per size in [{a:g}, {b:g}]; "
                                f"L = {L} has {sel.sum()}.")
            data.append((L, curves.control[L][sel], u_of(L)[sel], curves.error[L][sel]))
        return data

    def bounds(windows):
        return (min(w[0] for w in windows.values()), max(w[1] for w in windows.values()))

    def central(L):
        return curves.binder[L]

    derived = window is None and scaled_window is not None
    start, quality = None, None
    if derived:
        found = crossings(curves) if found is None else found
        located = [c.control for c in found if c.control is not None]
        if located:
            tc0 = float(np.median(located))
            start = (tc0, slope_nu(curves, tc0) or 1.0)
    if start is None:  # a fixed window, or no crossing to start from: the whole range
        tc, nu, quality = _fit_collapse(cells(central, windows), bounds(windows), None,
                                        min_overlap)
        start = (tc, nu)
    if derived:
        tc, nu = start
        tried: list[tuple[float, dict, float, float]] = []
        for _ in range(8):
            new = _windows(curves, tc, nu, float(scaled_window))
            if new == windows and quality is not None:  # fitted on these windows already
                break
            if any(new == w for _, w, _, _ in tried):  # a cycle: keep its best fit
                quality, windows, tc, nu = min(tried, key=lambda f: f[0])
                break
            windows = new
            tc, nu, quality = _fit_collapse(cells(central, windows), bounds(windows), None,
                                            min_overlap)
            tried.append((quality, windows, tc, nu))
    t_range = bounds(windows)
    fits = []
    n_reps = min(int(n_boot), min(r.shape[0] for r in curves.replicas.values()))
    for b in range(n_reps):
        try:
            t_b, nu_b, _ = _fit_collapse(cells(lambda L, b=b: curves.replicas[L][b], windows),
                                         t_range, (tc, nu), min_overlap)
        except DataError:
            continue
        fits.append((t_b, nu_b))
    arr = np.array(fits)
    err = arr.std(axis=0, ddof=1) if len(arr) > 2 else (None, None)
    return Collapse(tc, nu, None if err[0] is None else float(err[0]),
                    None if err[1] is None else float(err[1]), quality, t_range, windows,
                    float(scaled_window) if derived else None)


@dataclass
class Analysis:
    """The chain every finite-size scaling of one observable runs: crossings, the
    collapse started from them, and the crossings extrapolated with the collapse's nu."""

    curves: BinderCurves
    found: list[Crossing]
    collapse: Collapse
    extrapolated: CrossingExtrapolation


def analyse(curves: BinderCurves, n_boot: int = 40) -> Analysis:
    """Crossings of every pair of sizes, the collapse (window derived from them, `n_boot`
    bootstrap fits) and the crossings extrapolated with its nu."""
    found = crossings(curves)
    fit = collapse(curves, n_boot=n_boot, found=found)
    return Analysis(curves, found, fit, extrapolate_crossings(found, fit.nu))


# --- figures --------------------------------------------------------------------------


def binder_figure(curves: BinderCurves, found: list[Crossing],
                  references: dict[str, float] | None = None,
                  u_reference: float | None = None) -> Figure:
    """U_L against the control value per L with error bars, and each crossing found.

    references: {label: control value} drawn as grey lines (e.g. an exact Tc); and
    u_reference a horizontal line (e.g. a universal U*): references only, not inputs."""
    fig = Figure(figsize=(7.6, 4.0))
    ax = fig.add_axes((0.1, 0.13, 0.6, 0.78))
    for L in curves.sizes:
        ax.errorbar(curves.control[L], curves.binder[L], yerr=curves.error[L], fmt="o-",
                    ms=3, lw=1, capsize=2, label=f"L = {L}")
    ax.text(1.03, 1.0, "crossings", transform=ax.transAxes, fontsize=8, va="top",
            weight="bold")
    row = 1
    for c in found:
        if c.control is not None:
            err = f" ± {c.error:.4f}" if c.error else ""
            ax.axvline(c.control, color="tab:red", lw=0.8, ls="--")
            ax.annotate(f"L = {c.sizes[0]}/{c.sizes[1]}: {c.control:.4f}{err}",
                        (1.03, 1.0 - 0.06 * row), xycoords="axes fraction", fontsize=7,
                        color="tab:red", va="top")
            row += 1
    missing = [f"{a}/{b}" for (a, b), c in ((c.sizes, c) for c in found) if c.control is None]
    if missing:
        fig.text(0.73, 0.12, "no crossing located:\n" + ", ".join(missing), fontsize=7,
                 color="grey")
    for label, value in (references or {}).items():
        ax.axvline(value, color="k", lw=1, label=f"{label} {value:.4g} (reference)")
    if u_reference is not None:
        ax.axhline(u_reference, color="grey", lw=1, ls=":",
                   label=f"U* = {u_reference:.4g} (reference)")
    ax.set_xlabel(curves.control_name)
    ax.set_ylabel("Binder cumulant U")
    ax.legend(frameon=False, fontsize=7)
    ax.set_title("Binder cumulants per size; crossings dashed")
    return fig


def collapse_figure(curves: BinderCurves, fit: Collapse) -> Figure:
    """U_L against (T - Tc) L^(1/nu) with the fitted Tc and nu."""
    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.add_subplot()
    for L in curves.sizes:
        t = curves.control[L]
        a, b = fit.windows.get(L, fit.window)
        sel = (t >= a) & (t <= b)
        x = (t[sel] - fit.tc) * L ** (1.0 / fit.nu)
        ax.errorbar(x, curves.binder[L][sel], yerr=curves.error[L][sel], fmt="o", ms=3,
                    capsize=2, label=f"L = {L}")
    def pm(err):
        return f" ± {err:.2g}" if err is not None else ""
    crit = "Tc" if curves.control_name == "temperature" else f"{curves.control_name}_c"
    ax.set_xlabel(f"({curves.control_name} − {crit}) L^(1/ν)")
    ax.set_ylabel("Binder cumulant U")
    ax.set_title(f"collapse: {crit} = {fit.tc:.4f}{pm(fit.tc_error)}, "
                 f"ν = {fit.nu:.3f}{pm(fit.nu_error)}", fontsize=9)
    ax.legend(frameon=False, fontsize=7)
    return fig


def require_one_size(sizes, what: str) -> int:
    """The single lattice side of `sizes`; ConfigError naming them when there are several."""
    found = sorted({int(L) for L in np.atleast_1d(np.asarray(sizes))})
    if len(found) != 1:
        raise ConfigError(
            f"{what} works on configurations of one lattice size; this data has L = "
            f"{', '.join(map(str, found))}. Subset one size, or use the finite-size scaling "
            f"of betavae_fields.scaling (binder_curves, crossings, collapse) across them.")
    return found[0]
