"""Training settings from three places, in this order: what the user set, what the
domain suggests (a dataset's or loader's `defaults`, carried on `DomainData.defaults`),
and the core's own defaults. One function does it for the CLI and the Python API alike,
and says which values came from the domain so the CLI can print them and config.json
can record them."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from .data import DomainData
from .errors import ConfigError
from .model import ModelConfig
from .objective import Objective
from .registry import DEFAULTABLE
from .trainer import TrainConfig

MODEL_KEYS = frozenset(f.name for f in fields(ModelConfig)) - {"event_shape", "covariate_dim",
                                                               "domain"}
TRAIN_KEYS = frozenset(f.name for f in fields(TrainConfig))
OBJECTIVE_KEYS = frozenset(f.name for f in fields(Objective))
# Settings for which 0 means "off" on the command line and in domain defaults.
ZERO_IS_OFF = ("patience", "grad_clip")
# Settings that are option dicts: the user's keys go over the domain's, key by key.
MERGED = ("likelihood_options", "architecture_options", "prior_options")


def configs_for(
    data: DomainData, settings: dict[str, Any] | None = None
) -> tuple[ModelConfig, TrainConfig, Objective, dict[str, Any]]:
    """(model config, train config, objective, values taken from the domain).

    `settings` holds what the user set; a value of None counts as not set. Any setting
    the user left unset and the domain suggests is taken from `data.defaults`.
    """
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    unknown = sorted(set(given) - (MODEL_KEYS | TRAIN_KEYS | OBJECTIVE_KEYS))
    if unknown:
        raise ConfigError(f"unknown training setting(s) {unknown}.")
    odd = sorted(set(data.defaults) - DEFAULTABLE)
    if odd:
        raise ConfigError(f"the {data.domain!r} data suggests unknown training defaults {odd}; "
                          f"valid: {sorted(DEFAULTABLE)}.")
    from_domain = {k: v for k, v in data.defaults.items() if k not in given}
    # options suggested for the domain's likelihood, architecture or prior do not carry
    # over to another one the user chose
    dropped = {f"{base}_options" for base in ("likelihood", "architecture", "prior")
               if base in given and given[base] != data.defaults.get(base, given[base])}
    from_domain = {k: v for k, v in from_domain.items() if k not in dropped}
    given_beta_warmup = from_domain.pop("warmup_epochs_given_beta", None)
    if "beta" in given and given_beta_warmup is not None and "warmup_epochs" in from_domain:
        from_domain["warmup_epochs"] = given_beta_warmup
    for key in MERGED:
        if key in dropped:
            continue
        suggested, chosen = data.defaults.get(key), given.get(key)
        if isinstance(suggested, dict) and isinstance(chosen, dict):
            kept = {k: v for k, v in suggested.items() if k not in chosen}
            if kept:
                from_domain[key] = kept
                given = {**given, key: {**kept, **chosen}}
    if ("epochs" in given and "warmup_epochs" in from_domain
            and isinstance(data.defaults.get("epochs"), (int, float))):
        # a suggested warm-up is a share of the suggested epochs: keep the share
        share = from_domain["warmup_epochs"] / data.defaults["epochs"]
        from_domain["warmup_epochs"] = max(share * given["epochs"], 1e-6)
    merged = {**from_domain, **given}
    for key in ZERO_IS_OFF:
        if merged.get(key) == 0:
            merged[key] = None
    pick = lambda keys: {k: merged[k] for k in keys if k in merged}  # noqa: E731
    model = ModelConfig.for_data(data, **pick(MODEL_KEYS))
    train = TrainConfig(**pick(TRAIN_KEYS))
    objective = Objective(**pick(OBJECTIVE_KEYS))
    return model, train, objective, from_domain


def fill_from_domain(
    data: DomainData,
    model_config: ModelConfig | None,
    train: TrainConfig | None,
    objective: Objective | None,
) -> tuple[ModelConfig, TrainConfig, Objective, dict[str, Any]]:
    """The given configs, with each one not given built from the domain's suggestions;
    also returns the suggested values that were used."""
    model_d, train_d, objective_d, from_domain = configs_for(data)
    used: dict[str, Any] = {}
    for given, keys in ((model_config, MODEL_KEYS), (train, TRAIN_KEYS),
                        (objective, OBJECTIVE_KEYS)):
        if given is None:
            used.update({k: v for k, v in from_domain.items() if k in keys})
    return (model_config or model_d, train or train_d, objective or objective_d, used)
