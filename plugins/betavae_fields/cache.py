"""On-disk cache of Monte Carlo ensembles, so each set of parameters is sampled once.

A file is named by a hash of (kind, params, FORMAT_VERSION) and holds the arrays plus a
JSON record of the request inside one .npz. It is written atomically (temporary file in
the same folder, then os.replace), so a crash never leaves a half-written file under the
real name. On load the stored request must equal the requested one and every array must
be present, complete and match its stored digest; anything else is regenerated with a
warning that says why, never used silently. Bump FORMAT_VERSION when the file layout
changes, and a model's SAMPLER_REVISION when its sampler does, so old files stop matching.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from betavae_core import ConfigError, DataError

from .montecarlo import Ensemble

FORMAT_VERSION = 1
#: Sampler revisions that are part of a cache key (a model absent here is revision 1 and
#: adds nothing to its key): xy and phi4 gained Wolff cluster updates in revision 2.
SAMPLER_REVISION = {"xy": 2, "phi4": 2}
ENV_VAR = "BETAVAE_CACHE_DIR"
_ARRAYS = ("configs", "control", "energy", "magnetization")
_CONFIG_DTYPES = {"ising": np.int8, "xy": np.float32, "phi4": np.float32}
_KIND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class CacheWarning(UserWarning):
    """A cache file was not used (unreadable, other parameters) or could not be written."""


def cache_dir() -> Path:
    """$BETAVAE_CACHE_DIR if set, else ~/.cache/betavae/fields."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "betavae" / "fields"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _request(kind: str, params: dict) -> dict:
    """The canonical (JSON round-tripped) record a cache file must match."""
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ConfigError(
            f"cache kind must be a name of letters, digits, '_', '.' or '-'; got {kind!r}"
        )
    if not isinstance(params, dict):
        raise ConfigError(f"cache params must be a dict; got {type(params).__name__}")
    record = {"kind": kind, "params": params, "format": FORMAT_VERSION}
    if kind in SAMPLER_REVISION:
        record["sampler"] = SAMPLER_REVISION[kind]
    try:
        text = json.dumps(record, sort_keys=True, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cache params must be JSON-serialisable (finite numbers): {exc}") \
            from exc
    return json.loads(text)


def cache_key(kind: str, params: dict) -> str:
    """Hex digest naming the cache file of (kind, params, FORMAT_VERSION)."""
    text = json.dumps(_request(kind, params), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def cache_path(kind: str, params: dict, directory: Path | str | None = None) -> Path:
    """Where the ensemble for (kind, params) lives."""
    folder = Path(directory) if directory is not None else cache_dir()
    return folder / f"{kind}-{cache_key(kind, params)}.npz"


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays' names, dtypes, shapes and bytes: detects any damage."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _arrays_of(ens: Ensemble) -> dict[str, np.ndarray]:
    arrays = {name: np.asarray(getattr(ens, name)) for name in _ARRAYS}
    if ens.chain is not None:
        arrays["chain"] = np.asarray(ens.chain)
    return arrays


def save_ensemble(path: Path | str, ens: Ensemble, request: dict | None = None) -> Path:
    """Write ens to path (.npz) atomically; `request` is the record a load must match."""
    path = Path(path)
    arrays = _arrays_of(ens)
    meta = {
        "format": FORMAT_VERSION,
        "model": ens.model,
        "control_name": ens.control_name,
        "params": ens.params,
        "tau": [[float(k), float(v)] for k, v in ens.tau.items()],
        "spacing": [[float(k), int(v)] for k, v in ens.spacing.items()],
        "n": int(arrays["configs"].shape[0]),
        "digest": _digest(arrays),
        "request": request,
    }
    meta_text = json.dumps(meta, sort_keys=True, default=_json_default, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, meta=np.array(meta_text), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The meta record and arrays of a cache file; DataError if it cannot be read whole."""
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            missing = [n for n in ("meta", *_ARRAYS) if n not in z.files]
            if missing:
                raise DataError(f"arrays missing: {missing}")
            meta = json.loads(str(z["meta"][()]))
            arrays = {name: z[name] for name in z.files if name != "meta"}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"truncated or corrupt: {type(exc).__name__}: {exc}") from exc
    return meta, arrays


def _check(meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Raise DataError unless the arrays are complete and consistent with meta."""
    if meta.get("format") != FORMAT_VERSION:
        raise DataError(f"format {meta.get('format')!r}, expected {FORMAT_VERSION}")
    n = meta.get("n")
    configs = arrays["configs"]
    if configs.ndim != 3 or configs.shape[0] != n:
        raise DataError(f"configs have shape {configs.shape}, expected ({n}, L, L)")
    for name in (*_ARRAYS[1:], "chain"):
        if name in arrays and arrays[name].shape != (n,):
            raise DataError(f"{name} has shape {arrays[name].shape}, expected ({n},)")
    want = _CONFIG_DTYPES.get(meta.get("model"))
    if want is not None and configs.dtype != want:
        raise DataError(f"configs dtype {configs.dtype}, expected {np.dtype(want)}")
    if meta.get("digest") != _digest(arrays):
        raise DataError("array contents do not match the stored digest")


def _ensemble_from(meta: dict, arrays: dict[str, np.ndarray]) -> Ensemble:
    return Ensemble(
        model=meta["model"],
        configs=arrays["configs"],
        control=arrays["control"],
        energy=arrays["energy"],
        magnetization=arrays["magnetization"],
        tau={float(k): float(v) for k, v in meta["tau"]},
        spacing={float(k): int(v) for k, v in meta["spacing"]},
        params=meta["params"],
        control_name=meta["control_name"],
        chain=arrays.get("chain"),
    )


def _load(path: Path) -> tuple[Ensemble, dict | None]:
    meta, arrays = _read(path)
    try:
        _check(meta, arrays)
        return _ensemble_from(meta, arrays), meta.get("request")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"incomplete record: {type(exc).__name__}: {exc}") from exc


def load_ensemble(path: Path | str) -> Ensemble:
    """Read an ensemble written by save_ensemble; DataError says what is wrong with it."""
    path = Path(path)
    try:
        return _load(path)[0]
    except DataError as exc:
        raise DataError(f"ensemble file {path} is unusable: {exc}") from exc


def _differences(stored: Any, wanted: dict) -> str:
    """Human summary of how a stored request differs from the wanted one."""
    if not isinstance(stored, dict):
        return "no request record"
    parts = [f"{k}: stored {stored.get(k)!r}, requested {wanted[k]!r}"
             for k in ("kind", "format") if stored.get(k) != wanted[k]]
    old, new = stored.get("params") or {}, wanted["params"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            parts.append(f"{key}: stored {old.get(key)!r}, requested {new.get(key)!r}")
    return "; ".join(parts) or "records differ"


def _cached(path: Path, request: dict) -> Ensemble | None:
    """The cached ensemble if path holds a good one for request; else warn and None."""
    if not path.is_file():
        return None
    try:
        ens, stored = _load(path)
    except DataError as exc:
        reason = f"is unreadable ({exc})"
    else:
        if stored == request:
            return ens
        reason = f"was made with other parameters ({_differences(stored, request)})"
    warnings.warn(f"ensemble cache file {path} {reason}; regenerating it", CacheWarning,
                  stacklevel=3)
    return None


def cached_ensemble(
    kind: str,
    params: dict,
    make: Callable[[], Ensemble],
    directory: Path | str | None = None,
) -> Ensemble:
    """The ensemble for (kind, params): from the cache if valid, else make() and store it.

    directory defaults to cache_dir(). If the file cannot be written (read-only folder,
    full disk) the fresh ensemble is still returned, with a CacheWarning.
    """
    request = _request(kind, params)
    path = cache_path(kind, params, directory)
    found = _cached(path, request)
    if found is not None:
        return found
    ens = make()
    if not isinstance(ens, Ensemble):
        raise ConfigError(f"make() must return an Ensemble; got {type(ens).__name__}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_ensemble(path, ens, request)
    except OSError as exc:
        warnings.warn(
            f"could not write ensemble cache file {path} ({type(exc).__name__}: {exc}); "
            "returning the ensemble without caching it",
            CacheWarning,
            stacklevel=2,
        )
    return ens
