"""The `expression` loader: any single-cell file `readers` can read, as `DomainData`.

`claims_expression` asks each format reader whether it recognises the path (by content,
cheaply, never raising); `load_expression` reads it and converts it with the options the
record declares in `plugin.py`.
"""

from __future__ import annotations

from pathlib import Path

import betavae_core as bv
from betavae_core import DataError

from . import readers
from .conversion import to_domain_data


def claims_expression(path: Path) -> bool:
    """True when one of the format readers recognises `path`."""
    return readers.detect_format(path) is not None


def load_expression(path: Path, layer: str | None = None, batch_key: str | None = None,
                    label_key: str | None = None, likelihood: str | None = None,
                    zeros: str = "drop", backed: bool | str = False,
                    orientation: str | None = None, delimiter: str | None = None,
                    obs: str | None = None,
                    categorical_covariate_keys: str | list[str] | None = None,
                    continuous_covariate_keys: str | list[str] | None = None,
                    ) -> bv.DomainData:
    """Read an expression file (h5ad, 10x h5 or mtx, count table, plain h5) and convert it;
    `likelihood` defaults to nb for raw counts and gaussian otherwise. `backed` applies to
    h5ad files, `orientation`, `delimiter` and `obs` to count tables; a format refuses the
    options it does not take. The covariate keys are `obs` columns that condition the
    model as in `tl.fit` (one name, or a list: `-o continuous_covariate_keys=pct_mt,ccs`)."""
    given = {"backed": backed if backed is not False else None, "orientation": orientation,
             "delimiter": delimiter, "obs": obs}
    adata = readers.read(path, **{k: v for k, v in given.items() if v is not None})
    if label_key is None and "label" in adata.obs.columns:
        label_key = "label"
    try:
        data, _ = to_domain_data(adata, layer=layer, likelihood=likelihood,
                                 batch_key=batch_key, label_key=label_key, zeros=zeros,
                                 categorical_covariate_keys=_keys(categorical_covariate_keys),
                                 continuous_covariate_keys=_keys(continuous_covariate_keys))
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
    data.attrs["path"] = str(path)
    return data


def _keys(value: str | list[str] | None) -> list[str] | None:
    """A covariate option as a list of `obs` column names (`-o key=a` gives one string)."""
    if value is None or value == "":
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]
