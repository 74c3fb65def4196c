"""Domain-free disentanglement and identifiability metrics on (latents, factors) arrays.

The `disentanglement` evaluation (`betavae_science.evaluations`) and the experiments use
them; they need scikit-learn (`pip install 'betavae[science]'`).

Every metric takes plain arrays so any domain with ground-truth factors (or two fitted latent
spaces, for MCC) can be scored: ``latents`` is (n, d), e.g. posterior means, and ``factors``
is (n, k). ``discrete`` says which factors are categorical; where a metric needs discrete
factors, continuous ones are binned. When ``discrete`` is None a factor is taken as
categorical if all its values are integers and it has at most 32 distinct values (pass
``discrete`` explicitly when that guess could be wrong). Results are plain dicts of floats
and lists, ready for JSON, and deterministic given ``seed``.

Metrics:
    mig: Mutual Information Gap (Chen et al., 2018, "Isolating Sources of Disentanglement
        in Variational Autoencoders").
    dci: Disentanglement, Completeness, Informativeness (Eastwood & Williams, 2018, "A
        Framework for the Quantitative Evaluation of Disentangled Representations").
    sap: Separated Attribute Predictability (Kumar et al., 2018, "Variational Inference of
        Disentangled Latent Concepts from Unlabeled Observations").
    factorvae_score: FactorVAE metric (Kim & Mnih, 2018, "Disentangling by Factorising").
    mcc: mean correlation coefficient after optimal matching, the identifiability score of
        Hyvarinen & Morioka (2016, "Unsupervised Feature Extraction by Time-Contrastive
        Learning and Nonlinear ICA") and Khemakhem et al. (2020, "Variational Autoencoders
        and Nonlinear ICA: A Unifying Framework").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import balanced_accuracy_score, mutual_info_score, r2_score
from sklearn.tree import DecisionTreeClassifier

from betavae_core import ConfigError, DataError

__all__ = ["dci", "factorvae_score", "mcc", "mig", "sap"]

_MAX_INFERRED_LEVELS = 32  # integer-valued factors with at most this many values: categorical
_TEST_FRACTION = 0.2  # held-out share for the metrics that fit predictors


# --------------------------------------------------------------------------- validation


def _as_matrix(name: str, x: ArrayLike) -> np.ndarray:
    """Return ``x`` as a finite 2-D float array with >= 2 rows, or raise naming ``name``."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numeric array: {exc}") from exc
    if arr.ndim != 2:
        raise DataError(f"{name} must be 2-D (n, columns), got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise DataError(f"{name} needs at least 2 rows, got {arr.shape[0]}")
    if arr.shape[1] < 1:
        raise DataError(f"{name} needs at least 1 column, got shape {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{name} has non-finite values (NaN or inf), first at row {row}")
    return arr


def _check_pair(
    name_a: str, a: ArrayLike, name_b: str, b: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two matrices and that they have the same number of rows."""
    xa = _as_matrix(name_a, a)
    xb = _as_matrix(name_b, b)
    if xa.shape[0] != xb.shape[0]:
        raise DataError(
            f"{name_b} has {xb.shape[0]} rows but {name_a} has {xa.shape[0]}; "
            "rows must be the same items"
        )
    return xa, xb


def _discrete_mask(factors: np.ndarray, discrete: Sequence[bool] | None) -> np.ndarray:
    """Which factor columns are categorical: given, or guessed from integer values."""
    k = factors.shape[1]
    if discrete is None:
        mask = [
            bool(np.all(col == np.round(col)) and np.unique(col).size <= _MAX_INFERRED_LEVELS)
            for col in factors.T
        ]
        return np.asarray(mask, dtype=bool)
    flags = list(discrete)
    if len(flags) != k:
        raise ConfigError(f"discrete has {len(flags)} entries but factors has {k} columns")
    return np.asarray([bool(f) for f in flags], dtype=bool)


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- helpers


def _bin_equal_width(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Codes 0..n_bins-1 of equal-width bins over [min, max] (all 0 for a constant column)."""
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(x.shape[0], dtype=np.int64)
    inner = np.linspace(lo, hi, n_bins + 1)[1:-1]
    return np.digitize(x, inner).astype(np.int64)


def _bin_quantile(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Codes of (about) equal-frequency bins, so every bin holds ~n / n_bins items."""
    inner = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
    return np.digitize(x, inner, right=True).astype(np.int64)


def _labels(x: np.ndarray) -> np.ndarray:
    """Codes 0..c-1 of the distinct values of a categorical column."""
    return np.unique(x, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _factor_codes(factors: np.ndarray, mask: np.ndarray, n_bins: int, quantile: bool) -> list:
    """Discrete codes per factor: categories as they are, continuous factors binned."""
    binner = _bin_quantile if quantile else _bin_equal_width
    return [
        _labels(col) if is_d else binner(col, n_bins)
        for col, is_d in zip(factors.T, mask, strict=True)
    ]


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train/test row indices (test share ``_TEST_FRACTION``, at least 1 row each)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(max(1, int(round(n * _TEST_FRACTION))), n - 1)
    return perm[n_test:], perm[:n_test]


def _entropy_rows(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy (log base ``base``) of each row of a row-stochastic matrix; 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1) / np.log(base)


# --------------------------------------------------------------------------- MIG


def mig(
    latents: ArrayLike,
    factors: ArrayLike,
    n_bins: int = 20,
    discrete: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """Mutual Information Gap (Chen et al., 2018).

    Per factor, the gap between the largest and second-largest mutual information any
    single latent has with it, divided by the factor's entropy: near 1 when one latent
    alone captures the factor, near 0 when none or several do. Latents and continuous
    factors are discretised into ``n_bins`` equal-width bins (the usual histogram
    estimator, so MI carries a small positive bias of about (bins - 1)^2 / (2n) nats).
    With a single latent the gap is its MI. Constant factors (zero entropy) get 0.0 in
    ``mig_per_factor`` and are left out of the average.

    Returns:
        {"mig": mean gap, "mig_per_factor": gap per factor,
         "mutual_info": (d, k) MI matrix in nats, "factor_entropy": entropy per factor}.
    """
    z, v = _check_pair("latents", latents, "factors", factors)
    n_bins = _check_int("n_bins", n_bins, 2)
    mask = _discrete_mask(v, discrete)
    z_codes = [_bin_equal_width(col, n_bins) for col in z.T]
    v_codes = _factor_codes(v, mask, n_bins, quantile=False)
    mi = np.array([[mutual_info_score(vc, zc) for vc in v_codes] for zc in z_codes])
    entropy = np.array([mutual_info_score(vc, vc) for vc in v_codes])
    top = -np.sort(-mi, axis=0)
    second = top[1] if top.shape[0] > 1 else np.zeros(top.shape[1])
    informative = entropy > 1e-12
    gaps = np.zeros(v.shape[1])
    gaps[informative] = (top[0] - second)[informative] / entropy[informative]
    score = float(gaps[informative].mean()) if informative.any() else 0.0
    return {
        "mig": score,
        "mig_per_factor": gaps.tolist(),
        "mutual_info": mi.tolist(),
        "factor_entropy": entropy.tolist(),
    }


# --------------------------------------------------------------------------- DCI


def _forest(is_discrete: bool, seed: int) -> RandomForestClassifier | RandomForestRegressor:
    """A small, fast forest; all features at every split so importances are not diluted."""
    kwargs: dict[str, Any] = {
        "n_estimators": 20,
        "max_depth": 8,
        "min_samples_leaf": 5,
        "max_features": None,
        "max_samples": 0.5,
        "random_state": seed,
        "n_jobs": 1,
    }
    return RandomForestClassifier(**kwargs) if is_discrete else RandomForestRegressor(**kwargs)


def dci(
    latents: ArrayLike,
    factors: ArrayLike,
    seed: int = 0,
    discrete: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """Disentanglement, Completeness and Informativeness (Eastwood & Williams, 2018).

    One random forest per factor predicts it from all latents (classifier for categorical
    factors, regressor otherwise) on a random 80/20 split; its impurity feature
    importances form column j of the importance matrix R (d x k, columns sum to 1).
    Disentanglement: mean over latents of 1 - H_k(R_i. / sum_j R_ij), weighted by each
    latent's share of total importance (does each latent capture at most one factor?).
    Completeness: mean over factors of 1 - H_d(R_.j) (is each factor captured by one
    latent?). Entropies use log base k and d, so both lie in [0, 1]; with k = 1
    (d = 1) disentanglement (completeness) is 1 by definition. Informativeness is
    reported as a score, not an error: mean held-out accuracy (categorical factors) or
    R^2 clipped at 0 (continuous factors).

    Returns:
        {"disentanglement", "completeness", "informativeness": floats,
         "informativeness_per_factor": list, "importance": R as d lists of k floats}.
    """
    z, v = _check_pair("latents", latents, "factors", factors)
    mask = _discrete_mask(v, discrete)
    d, k = z.shape[1], v.shape[1]
    train, test = _split(z.shape[0], seed)
    importance = np.zeros((d, k))
    info = np.zeros(k)
    for j in range(k):
        target = _labels(v[:, j]) if mask[j] else v[:, j]
        model = _forest(bool(mask[j]), seed + j)
        model.fit(z[train], target[train])
        importance[:, j] = model.feature_importances_
        pred = model.predict(z[test])
        if mask[j]:
            info[j] = float(np.mean(pred == target[test]))
        elif np.ptp(target[test]) > 0:
            info[j] = max(0.0, float(r2_score(target[test], pred)))
    row_sum = importance.sum(axis=1)
    total = row_sum.sum()
    if k > 1 and total > 0:
        p_rows = importance / np.where(row_sum > 0, row_sum, 1.0)[:, None]
        d_i = np.where(row_sum > 0, 1.0 - _entropy_rows(p_rows, k), 0.0)
        disentanglement = float(np.sum(d_i * row_sum / total))
    else:
        disentanglement = 1.0 if k == 1 else 0.0
    col_sum = importance.sum(axis=0)
    if d > 1:
        p_cols = (importance / np.where(col_sum > 0, col_sum, 1.0)).T
        c_j = np.where(col_sum > 0, 1.0 - _entropy_rows(p_cols, d), 0.0)
        completeness = float(c_j.mean())
    else:
        completeness = 1.0
    return {
        "disentanglement": disentanglement,
        "completeness": completeness,
        "informativeness": float(info.mean()),
        "informativeness_per_factor": info.tolist(),
        "importance": importance.tolist(),
    }


# --------------------------------------------------------------------------- SAP


def sap(
    latents: ArrayLike,
    factors: ArrayLike,
    discrete: Sequence[bool] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Separated Attribute Predictability (Kumar et al., 2018).

    Score matrix S (d x k) of how well each single latent predicts each factor; SAP is
    the mean over factors of the gap between the best and second-best latent, so it is
    high only when one latent alone predicts the factor. Continuous factors: R^2 of a
    1-D linear fit on all rows (the squared Pearson correlation). Categorical factors:
    balanced accuracy on a held-out 20% of a 1-D threshold classifier (a decision tree
    on that latent alone with at most as many leaves as classes), chance-adjusted
    (sklearn ``adjusted=True``) and clipped at 0 so that, like R^2, 0 means no
    information; the gap is then the unadjusted one times c / (c - 1) for c classes.
    With a single latent the gap is its score.

    Returns:
        {"sap": float, "sap_per_factor": list, "sap_matrix": S as d lists of k floats}.
    """
    z, v = _check_pair("latents", latents, "factors", factors)
    mask = _discrete_mask(v, discrete)
    d, k = z.shape[1], v.shape[1]
    train, test = _split(z.shape[0], seed)
    zc = z - z.mean(axis=0)
    z_std = zc.std(axis=0)
    score = np.zeros((d, k))
    for j in range(k):
        if mask[j]:
            y = _labels(v[:, j])
            n_classes = int(y.max()) + 1
            if n_classes < 2 or np.unique(y[test]).size < 2:
                continue
            for i in range(d):
                stump = DecisionTreeClassifier(
                    max_leaf_nodes=max(2, n_classes), min_samples_leaf=5, random_state=seed
                )
                stump.fit(z[train, i : i + 1], y[train])
                pred = stump.predict(z[test, i : i + 1])
                acc = balanced_accuracy_score(y[test], pred, adjusted=True)
                score[i, j] = max(0.0, float(acc))
        else:
            vc = v[:, j] - v[:, j].mean()
            v_std = vc.std()
            if v_std <= 0:
                continue
            ok = z_std > 0
            corr = (zc[:, ok] * vc[:, None]).mean(axis=0) / (z_std[ok] * v_std)
            score[ok, j] = np.clip(corr**2, 0.0, 1.0)
    top = -np.sort(-score, axis=0)
    second = top[1] if d > 1 else np.zeros(k)
    gaps = top[0] - second
    return {
        "sap": float(gaps.mean()),
        "sap_per_factor": gaps.tolist(),
        "sap_matrix": score.tolist(),
    }


# --------------------------------------------------------------------------- FactorVAE


def factorvae_score(
    latents: ArrayLike,
    factors: ArrayLike,
    discrete: Sequence[bool] | None = None,
    n_votes: int = 800,
    batch_size: int = 64,
    seed: int = 0,
    n_bins: int = 10,
) -> dict[str, Any]:
    """FactorVAE metric (Kim & Mnih, 2018), adapted to a fixed dataset.

    Latents are divided by their standard deviation over all rows; dimensions with std
    below 0.05 x the largest are dropped as collapsed. Each vote picks a factor uniformly,
    then a value of it (that of a random row, so values are drawn by frequency; continuous
    factors are binned into ``n_bins`` equal-frequency bins), draws ``batch_size`` rows
    sharing that value (with replacement if fewer exist) and votes (argmin over dims of the
    within-batch variance, factor). A majority-vote classifier, dim -> most voted factor,
    is fitted on 2/3 of the votes; the score is its accuracy on the rest. Near 1 when
    fixing a factor fixes exactly one latent.

    Returns:
        {"factorvae_score": accuracy, "train_accuracy": accuracy on the fitting votes,
         "active_dims": kept latent indices, "votes": (d, k) vote counts of all votes}.
    """
    z, v = _check_pair("latents", latents, "factors", factors)
    n_votes = _check_int("n_votes", n_votes, 2)
    batch_size = _check_int("batch_size", batch_size, 2)
    n_bins = _check_int("n_bins", n_bins, 2)
    mask = _discrete_mask(v, discrete)
    d, k = z.shape[1], v.shape[1]
    std = z.std(axis=0)
    if std.max() <= 0:
        return {
            "factorvae_score": 0.0,
            "train_accuracy": 0.0,
            "active_dims": [],
            "votes": np.zeros((d, k), dtype=int).tolist(),
        }
    active = np.flatnonzero(std >= 0.05 * std.max())
    zn = z[:, active] / std[active]
    codes = _factor_codes(v, mask, n_bins, quantile=True)
    groups = [{int(u): np.flatnonzero(c == u) for u in np.unique(c)} for c in codes]
    rng = np.random.default_rng(seed)
    vote_dim = np.empty(n_votes, dtype=np.int64)
    vote_factor = rng.integers(0, k, size=n_votes)
    anchors = rng.integers(0, z.shape[0], size=n_votes)
    for t in range(n_votes):
        j = int(vote_factor[t])
        members = groups[j][int(codes[j][anchors[t]])]
        replace = members.size < batch_size
        rows = rng.choice(members, size=batch_size, replace=replace)
        vote_dim[t] = int(np.argmin(zn[rows].var(axis=0)))
    n_train = max(1, min(n_votes - 1, (2 * n_votes) // 3))
    counts = np.zeros((active.size, k), dtype=np.int64)
    np.add.at(counts, (vote_dim[:n_train], vote_factor[:n_train]), 1)
    predicted = np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), -1)
    train_acc = float(np.mean(predicted[vote_dim[:n_train]] == vote_factor[:n_train]))
    eval_acc = float(np.mean(predicted[vote_dim[n_train:]] == vote_factor[n_train:]))
    all_votes = np.zeros((d, k), dtype=np.int64)
    np.add.at(all_votes, (active[vote_dim], vote_factor), 1)
    return {
        "factorvae_score": eval_acc,
        "train_accuracy": train_acc,
        "active_dims": active.tolist(),
        "votes": all_votes.tolist(),
    }


# --------------------------------------------------------------------------- MCC


def _standardise(x: np.ndarray) -> np.ndarray:
    """Centre and scale columns to unit variance; constant columns become all zero."""
    xc = x - x.mean(axis=0)
    s = xc.std(axis=0)
    return xc / np.where(s > 0, s, 1.0)


def mcc(a: ArrayLike, b: ArrayLike, method: str = "pearson") -> dict[str, Any]:
    """Mean correlation coefficient after optimal one-to-one matching of columns.

    The standard identifiability score for latent-variable models (Hyvarinen & Morioka,
    2016; Khemakhem et al., 2020): correlate every column of ``a`` (n x d1) with every
    column of ``b`` (n x d2), match min(d1, d2) pairs maximising total |correlation|
    (Hungarian algorithm), and average the matched |correlation|. It is 1 when ``b`` is
    ``a`` up to permutation, sign and per-column scale (``"pearson"``) or any strictly
    monotone per-column map (``"spearman"``). ``b`` may be a second latent space or the
    ground-truth factors. Constant columns correlate 0 with everything.

    Returns:
        {"mcc": float, "matching": [i, j] pairs (column i of a with column j of b, by i),
         "correlations": signed correlation of each matched pair}.
    """
    xa, xb = _check_pair("a", a, "b", b)
    if method not in ("pearson", "spearman"):
        raise ConfigError(f"method must be 'pearson' or 'spearman', got {method!r}")
    if method == "spearman":
        xa = rankdata(xa, axis=0)
        xb = rankdata(xb, axis=0)
    corr = np.clip(_standardise(xa).T @ _standardise(xb) / xa.shape[0], -1.0, 1.0)
    rows, cols = linear_sum_assignment(-np.abs(corr))
    matched = corr[rows, cols]
    return {
        "mcc": float(np.abs(matched).mean()),
        "matching": [[int(i), int(j)] for i, j in zip(rows, cols, strict=True)],
        "correlations": matched.tolist(),
    }
