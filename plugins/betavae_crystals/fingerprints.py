"""Structural and compositional fingerprints for the coverage metrics, as CDVAE computes
them (Xie et al. 2022, `scripts/compute_metrics.py` and `eval_utils.py` of txie-93/cdvae),
so that our COV-R / COV-P can be set beside the published numbers.

* Structural (61 numbers): matminer's `CrystalNNFingerprint.from_preset("ops")` of every
  site (CrystalNN's weight of each coordination number and the local order parameters of
  that coordination), averaged over the sites. Not standardised.
* Compositional (132 numbers): matminer's `ElementProperty.from_preset("magpie")` of the
  composition (minimum, maximum, range, mean, mean absolute deviation and mode of 22
  Magpie element properties), without matminer's NaN imputation (CDVAE's matminer had
  none). Before distances are taken, `scale_composition` standardises each feature with
  the fixed means and standard deviations CDVAE ships (`CompScalerMeans`/`CompScalerStds`
  in `cdvae/common/constants.py`, the same for every dataset) and sets NaN to 0, as
  CDVAE's `CompScaler` does. A fixed scaler makes distances independent of the data set
  they are measured on, and the coverage cutoffs (in `evaluations`) assume it.

Why: coverage counts a structure as covered when another one lies within a cutoff in both
fingerprints; the cutoffs (0.2 / 4 for Perov-5 and Carbon-24) only mean what they mean
in CDVAE's paper with CDVAE's fingerprints and scaler. Our earlier pymatgen-only
fingerprints (coordination weights, 96 Magpie-style features standardised on the data)
made COV-R/COV-P incomparable; even the training set covered only 79 % of the test set.

CrystalNN takes tens of milliseconds per site, so `fingerprint_arrays` spreads large
sets over a pool of worker processes (2 by default) and gives up on one structure after
`TIME_LIMIT_S` seconds (degenerate generated cells can have thousands of neighbours
within CrystalNN's search radius). A structure that cannot be fingerprinted (None, a
featurizer error, the time limit) gets a row of NaN in both arrays; CDVAE likewise
drops such generated crystals from coverage but still counts them in COV-P's base.

matminer is imported on first use, not with the plugin (it takes seconds to import).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np

STRUCT_FP_LENGTH = 61
COMP_FP_LENGTH = 132
TIME_LIMIT_S = 30.0
POOL_MIN_ITEMS = 64  # fewer structures than this: spawning workers costs more than it saves

# CDVAE's fixed standardisation of the 132 Magpie features (cdvae/common/constants.py),
# in matminer's order: six statistics (minimum, maximum, range, mean, avg_dev, mode) of
# each property named on the right.
COMP_SCALER_MEANS = np.array((
    21.194441759304013, 58.20212663122281, 37.0076848719188,  # Number
    36.52738520455582, 13.350626389725019, 29.468922184630255,
    28.71735137747704, 78.8868535524408, 50.16950217496375,  # MendeleevNumber
    59.56764743604155, 19.020429484306277, 61.335572740454325,
    47.14515893344343, 141.75135923307818, 94.60620029962553,  # AtomicWeight
    85.95794070476977, 34.07300576173523, 68.06189371516912,
    637.9862061297893, 1817.2394155466848, 1179.2532094169414,  # MeltingT
    1127.2743149568837, 431.51034284549826, 909.1060025135899,
    3.7744320927984534, 13.673707104881585, 9.899275012083132,  # Column
    9.620186927095652, 3.8426065581251856, 9.96950217496375,
    3.305461575640406, 5.483035282745288, 2.1775737071048815,  # Row
    4.215114560306594, 0.8206087101824266, 3.732092798453359,
    109.16732721121315, 179.5570323827936, 70.38970517158047,  # CovalentRadius
    136.0978305229613, 27.027545809538527, 119.16713388110198,
    1.2721433060967857, 2.4614001837260617, 1.1892568776289631,  # Electronegativity
    1.9844483610247092, 0.4691462290494881, 2.100143582306204,
    1.4829869502174964, 1.9899951667472209, 0.5070082165297245,  # NsValence
    1.7956250375970633, 0.2056251946617602, 1.745867568873852,
    0.05650072498791687, 2.3618656355727405, 2.3053649105848235,  # NpValence
    1.2829636137262992, 0.9995555685850794, 1.5150314161430642,
    0.7731271145480909, 7.4648139197680035, 6.691686805219913,  # NdValence
    4.010677272036105, 2.612307566507693, 3.303528274528758,
    0.2739487675205413, 5.889753504108265, 5.615804736587724,  # NfValence
    2.3244356612494683, 2.1426251769710905, 1.4464475592073465,
    4.739246012566457, 14.578395360077332, 9.839149347510874,  # NValence
    9.413701584608935, 3.537059747455868, 8.550410826486225,
    0.008119864668922184, 0.43286611889801835, 0.4247462542290962,  # NsUnfilled
    0.16687837041055423, 0.17139889490813626, 0.10898985016916385,
    0.06283228612856452, 2.6573707104881583, 2.594538424359594,  # NpUnfilled
    1.219602938224228, 1.0596390454742999, 1.1120831319478008,
    0.14842919284678588, 3.8473658772353794, 3.6989366843885936,  # NdUnfilled
    1.4541605082183982, 1.3862277372859781, 0.8018849685838569,
    0.03542774287095215, 2.4474625422909617, 2.4120347994200095,  # NfUnfilled
    0.7745217539010397, 0.9145812330586208, 0.3198646689221846,
    1.552730787820203, 6.910681488641856, 5.357950700821653,  # NUnfilled
    3.615163570754227, 1.9072256165179793, 2.6702271628806185,
    14.608536589568727, 34.83222477045747, 20.223688180890715,  # GSvolume_pa
    22.47901710732293, 7.17674504190757, 18.641837024143584,
    0.009066988883518605, 0.9185191396809959, 0.9094521507974755,  # GSbandgap
    0.4368550481994018, 0.38905942883427047, 0.48375558240695804,
    0.0012985909686158003, 0.21708593995837092, 0.21578734898975546,  # GSmagmom
    0.08167977375391729, 0.08155386250705281, 0.06036340747305611,
    116.32010633156113, 217.5905751570807, 101.27046882551957,  # SpaceGroupNumber
    162.87154200548844, 41.920624308665566, 136.4664572257129,
))
COMP_SCALER_STDS = np.array((
    16.35781741152948, 20.189540126474725, 20.516298414514758,  # Number
    16.816765336550194, 7.966591328222124, 22.270791076753067,
    21.802116630115243, 12.804546460581966, 24.756629388687983,  # MendeleevNumber
    13.930306216047477, 10.214535652334533, 27.801612936980938,
    39.74031558353379, 54.269739685575814, 53.70466607591569,  # AtomicWeight
    42.852342044453444, 20.78341194242935, 56.28783510219931,
    563.8004405882157, 732.0722574247563, 736.2122907972664,  # MeltingT
    606.351603075103, 272.62646060896407, 810.6156779688841,
    3.0362262146833428, 3.2075174256751606, 4.0633818989245665,  # Column
    2.9738244769894764, 1.7805586029644034, 5.643243225066782,
    1.1994336274579853, 0.8939013979423364, 1.2297581799896975,  # Row
    1.0066021334519983, 0.49129747526397105, 1.4159553146070951,
    31.754756468836774, 28.054241463256226, 38.16336054795611,  # CovalentRadius
    25.83485338379922, 15.388376641904662, 39.67137484594156,
    0.31988340032011076, 0.6833658037760536, 0.7464197945553585,  # Electronegativity
    0.4881349085029781, 0.3176591553643101, 0.8601748146737138,
    0.5864801661863596, 0.10048913710210677, 0.5836289120986499,  # NsValence
    0.2811748167435902, 0.2468696279341553, 0.5007375747433073,
    0.37237566669029587, 1.7235989187720187, 1.7058836077743305,  # NpValence
    1.1558859351244697, 0.7677842566598179, 1.9203550253462733,
    2.1289400248865182, 3.5326064169848332, 3.708508303762512,  # NdValence
    2.8709941136664567, 1.6110681295257014, 4.310192504023775,
    1.6644182118209292, 6.228287671164213, 6.1200848808512305,  # NfValence
    3.1986202996110302, 2.4492978142248867, 4.030497343977163,
    3.662028270049814, 6.8192125550358345, 6.614243783887738,  # NValence
    4.334987449618594, 2.568319610320196, 5.9494890200106925,
    0.08974370432893491, 0.4954725441517777, 0.494304434278516,  # NsUnfilled
    0.2309340434963803, 0.2072873961103969, 0.31162647950590266,
    0.39805702757060923, 1.8111691089355726, 1.7973395144505941,  # NpUnfilled
    0.9486995373104102, 0.7538753151875139, 1.5233177017753785,
    0.7952606701778913, 3.711190225170556, 3.638721437232604,  # NdUnfilled
    1.7171165424006831, 1.4307904413917036, 2.1047820817622904,
    0.49193748323158065, 4.064840532426175, 4.035286619587313,  # NfUnfilled
    1.4858577214526643, 1.5799117659864677, 1.6130080156145745,
    1.555249156140194, 4.776932951077492, 4.569790780459629,  # NUnfilled
    2.224617778217326, 1.7217507416156546, 2.5969733650703763,
    7.215001918238936, 19.252513469778584, 18.775394044177858,  # GSvolume_pa
    9.447222764774764, 6.7467931836261235, 11.106825644766616,
    0.27206794253092115, 1.6449321034573106, 1.6236282792648686,  # GSbandgap
    0.8506917026741503, 0.7020945355184042, 1.2281895279350408,
    0.04134438177238229, 0.5508855867341717, 0.5486095551438679,  # GSmagmom
    0.24239297524046477, 0.2127779137935831, 0.3036750942874694,
    80.06063945615361, 21.345794811194104, 80.16475677581042,  # SpaceGroupNumber
    52.58533928558554, 35.40836791039412, 85.980205895116,
))


class FingerprintTimeout(Exception):
    """A structure took longer than the time limit to fingerprint."""


@lru_cache(maxsize=1)
def _featurizers() -> tuple[Any, Any]:
    """(CrystalNNFingerprint "ops", ElementProperty "magpie"), imported on first use."""
    try:
        from matminer.featurizers.composition.composite import ElementProperty
        from matminer.featurizers.site.fingerprint import CrystalNNFingerprint
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the coverage fingerprints need matminer: pip install "
                          "'matminer>=0.10,<0.11'") from err
    structural = CrystalNNFingerprint.from_preset("ops")
    try:
        compositional = ElementProperty.from_preset("magpie", impute_nan=False)
    except TypeError:  # a matminer without the impute_nan option does not impute
        compositional = ElementProperty.from_preset("magpie")
    return structural, compositional


def structure_fingerprint(structure: Any) -> np.ndarray:
    """CrystalNN "ops" fingerprint of every site, averaged over sites (61 numbers).
    Raises what the featurizer raises."""
    featurizer, _ = _featurizers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sites = [featurizer.featurize(structure, i) for i in range(len(structure))]
    return np.asarray(sites, dtype=np.float64).mean(axis=0)


def composition_fingerprint(composition: Any) -> np.ndarray:
    """Magpie element-property statistics of a composition (132 numbers, unscaled; NaN
    where Magpie has no value for an element, e.g. the electronegativity of He)."""
    _, featurizer = _featurizers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(featurizer.featurize(composition), dtype=np.float64)


def composition_arrays(structures: Sequence[Any]) -> np.ndarray:
    """Unscaled Magpie fingerprints (n, 132), one row per structure, computed once per
    reduced formula: Magpie's statistics depend only on the element fractions, and
    generated sets repeat formulas. NaN rows for a missing or empty structure."""
    out = np.full((len(structures), COMP_FP_LENGTH), np.nan)
    seen: dict[str, np.ndarray | None] = {}
    for i, structure in enumerate(structures):
        if structure is None or len(structure) == 0:
            continue
        formula = structure.composition.reduced_formula
        if formula not in seen:
            try:
                row = composition_fingerprint(structure.composition)
            except Exception:  # a featurizer error leaves the row empty, as in `_one`
                row = None
            seen[formula] = row if row is not None and row.shape == (COMP_FP_LENGTH,) else None
        if seen[formula] is not None:
            out[i] = seen[formula]
    return out


def scale_composition(fingerprints: np.ndarray) -> np.ndarray:
    """CDVAE's CompScaler: (x - mean) / std with its fixed constants, NaN -> 0."""
    scaled = (np.asarray(fingerprints, dtype=np.float64) - COMP_SCALER_MEANS) / COMP_SCALER_STDS
    return np.where(np.isnan(scaled), 0.0, scaled)


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise FingerprintTimeout after `seconds`, where SIGALRM is ours to use: in the main
    thread, on POSIX, and only while nothing else (e.g. a test timeout) has claimed it."""
    usable = (seconds and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread()
              and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None))
    if not usable:
        yield
        return

    def _expired(signum: int, frame: Any) -> None:
        raise FingerprintTimeout(f"no fingerprint within {seconds} s")

    signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def _one(structure: Any, time_limit: float | None = TIME_LIMIT_S
         ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(structural, compositional) fingerprints of one structure; (None, None) when it
    cannot be fingerprinted."""
    _featurizers()  # a missing matminer is an error, not a structure that failed
    if structure is None or len(structure) == 0:
        return None, None
    try:
        with _time_limit(time_limit):
            struct = structure_fingerprint(structure)
            comp = composition_fingerprint(structure.composition)
    except Exception:  # featurizer errors and FingerprintTimeout alike
        return None, None
    if struct.shape != (STRUCT_FP_LENGTH,) or comp.shape != (COMP_FP_LENGTH,):
        return None, None
    return struct, comp


def _worker_start() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    warnings.simplefilter("ignore")


def _worker_batch(args: tuple[list[Any], float | None]
                  ) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    structures, time_limit = args
    return [_one(s, time_limit) for s in structures]


def default_workers() -> int:
    """Two worker processes, or fewer on a smaller machine."""
    return max(1, min(2, os.cpu_count() or 1))


def _pooled(structures: Sequence[Any], workers: int, time_limit: float | None
            ) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    size = max(1, min(64, len(structures) // (4 * workers)))
    batches = [(list(structures[i:i + size]), time_limit)
               for i in range(0, len(structures), size)]
    # spawn, not fork: the parent holds torch and BLAS thread pools that fork would copy
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=_worker_start) as pool:
        return [row for batch in pool.map(_worker_batch, batches) for row in batch]


def fingerprint_arrays(structures: Sequence[Any], workers: int | None = None,
                       time_limit: float | None = TIME_LIMIT_S,
                       only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(structural (n, 61), compositional (n, 132) unscaled) fingerprints, one row per
    structure; both rows are NaN where a structure cannot be fingerprinted (see
    `failed`) or is left out by the boolean mask `only` (not computed: CrystalNN is the
    slow part). `workers` processes (default `default_workers()`) share the work when
    there are at least POOL_MIN_ITEMS structures; 1 computes in this process."""
    structures = list(structures)
    if only is not None:
        only = np.asarray(only, dtype=bool)
        if only.shape != (len(structures),):
            from betavae_core import DataError  # here: spawned workers import this module

            raise DataError(f"fingerprint_arrays: `only` has shape {only.shape}; expected "
                            f"({len(structures)},), one flag per structure.")
        picked = np.nonzero(only)[0]
        some = fingerprint_arrays([structures[i] for i in picked], workers, time_limit)
        struct = np.full((len(structures), STRUCT_FP_LENGTH), np.nan)
        comp = np.full((len(structures), COMP_FP_LENGTH), np.nan)
        struct[picked], comp[picked] = some
        return struct, comp
    _featurizers()
    workers = default_workers() if workers is None else max(1, int(workers))
    rows = None
    if workers > 1 and len(structures) >= POOL_MIN_ITEMS:
        try:
            rows = _pooled(structures, workers, time_limit)
        except (BrokenProcessPool, OSError) as err:
            warnings.warn(f"fingerprint workers failed ({err}); computing in this process",
                          RuntimeWarning, stacklevel=2)
    if rows is None:
        rows = [_one(s, time_limit) for s in structures]
    struct = np.full((len(rows), STRUCT_FP_LENGTH), np.nan)
    comp = np.full((len(rows), COMP_FP_LENGTH), np.nan)
    for i, (s, c) in enumerate(rows):
        if s is not None and c is not None:
            struct[i], comp[i] = s, c
    return struct, comp


def failed(struct: np.ndarray) -> np.ndarray:
    """Rows of `fingerprint_arrays` output that hold no fingerprint."""
    struct = np.asarray(struct, dtype=np.float64)
    if struct.ndim != 2 or struct.shape[1] == 0:
        return np.zeros(len(struct), dtype=bool)
    return np.isnan(struct).all(axis=1)
