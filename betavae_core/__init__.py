"""betavae: a small β-VAE core with pluggy hooks for domains.

β is the price of information: every fit reports rate (KL per latent dimension) and
distortion (−log p(x|z)) separately. Plugins bring data loaders, likelihoods,
evaluations, architectures, candidate generators and subcommands through the `betavae`
entry-point group; see `betavae_core.hookspecs` for the contract.

The names below are the declared API: everything a plugin may use (README, "Writing a
plugin", says what each is for). Importing this package imports neither torch nor
matplotlib: the names that need them load on first use, so plugin modules and the
command line start at once.
"""

from __future__ import annotations

from .errors import (
    BetaVAEError,
    CheckpointError,
    ConfigError,
    DataError,
    MissingDependencyError,
    NonFiniteLossError,
    NotRegisteredError,
    OutputExistsError,
    PluginError,
)
from .hookspecs import Register, hookimpl
from .lazy import lazy, lazy_exports, requires
from .plugins import call_plugin, get_host, plugin_infos, registry, reset_plugins
from .registry import (
    DEFAULTABLE,
    SAMPLE_MODES,
    Architecture,
    Dataset,
    Evaluation,
    Generator,
    LikelihoodSpec,
    Loader,
    check_options,
)

# name -> module (relative to this package) that defines it; imported on first access.
# No name here is also the name of a submodule: importing that submodule would bind the
# module, not the name, on this package.
_LAZY = {
    # data and models
    "DomainData": "data", "check_finite": "data",
    "RowSource": "rows", "SparseRows": "rows",
    "Likelihood": "likelihoods",
    "ArchitectureRequest": "architectures", "EncoderOutput": "architectures",
    "SkipGate": "architectures", "build_mlp": "architectures",
    "BetaVAE": "model", "LossRecord": "model", "ModelConfig": "model",
    "Objective": "objective", "minibatch_tc": "objective", "PRIORS": "priors",
    # fitting
    "TrainConfig": "trainer", "FitResult": "trainer", "fit": "trainer",
    "split_indices": "trainer", "resolve_device": "trainer",
    "configs_for": "settings",
    "load_data": "sources", "parse_options": "sources",
    "sweep": "sweeps",
    # batched passes of a fitted model
    "encode": "posterior", "decode": "posterior", "reconstruct": "posterior",
    "evaluate_terms": "posterior", "heldout_summary": "posterior", "batches": "posterior",
    "minibatch": "posterior", "Decoded": "posterior", "Terms": "posterior",
    # runs, evaluations, generation
    "RunContext": "context", "Run": "runs", "load_run": "runs", "load_model": "runs",
    "evaluate": "evaluation", "evaluate_run": "evaluation",
    "generate": "generation", "sample": "generation", "prepare_samples": "generation",
    "EvaluationResult": "results", "CandidateReport": "results",
    "GeneratedSamples": "results",
    # files
    "atomic_write": "checkpoint", "write_json": "checkpoint", "write_text": "checkpoint",
    "write_array": "checkpoint", "read_json": "checkpoint", "save_weights": "checkpoint",
    "load_weights": "checkpoint", "prepare_run_dir": "checkpoint",
    "new_output_dir": "checkpoint", "output_folder": "manifest",
    "CONFIG": "checkpoint", "WEIGHTS": "checkpoint", "HISTORY": "checkpoint",
    "REPORT": "checkpoint", "DOMAIN_RECORD": "checkpoint",
    "save_figure": "plots",
}
# Modules exported whole: the information measures and the core's plots.
_MODULES = ("information", "plots")

__all__ = [  # every name above, eager or lazy (a test checks they agree)
    "Architecture", "ArchitectureRequest", "BetaVAE", "BetaVAEError", "CONFIG",
    "CandidateReport", "CheckpointError", "ConfigError", "DEFAULTABLE", "DOMAIN_RECORD",
    "DataError", "Dataset", "Decoded", "DomainData", "EncoderOutput", "Evaluation",
    "EvaluationResult", "FitResult", "GeneratedSamples", "Generator", "HISTORY", "Likelihood",
    "LikelihoodSpec", "Loader", "LossRecord", "MissingDependencyError", "ModelConfig",
    "NonFiniteLossError",
    "NotRegisteredError", "Objective", "OutputExistsError", "PRIORS", "PluginError", "REPORT",
    "Register", "RowSource", "Run", "RunContext", "SAMPLE_MODES", "SkipGate", "SparseRows",
    "Terms", "TrainConfig", "WEIGHTS", "atomic_write", "batches", "build_mlp", "call_plugin",
    "check_finite", "check_options", "configs_for", "decode", "encode", "evaluate",
    "evaluate_run", "evaluate_terms", "fit", "generate", "get_host", "heldout_summary",
    "hookimpl", "information", "lazy", "lazy_exports", "load_data", "load_model", "load_run",
    "load_weights",
    "minibatch", "minibatch_tc", "new_output_dir", "output_folder", "parse_options", "plots",
    "plugin_infos",
    "prepare_run_dir",
    "prepare_samples", "read_json", "reconstruct", "registry", "requires", "reset_plugins",
    "resolve_device", "sample", "save_figure", "save_weights", "split_indices", "sweep",
    "write_array", "write_json", "write_text"
]


__getattr__ = lazy_exports(__name__, _LAZY, modules=_MODULES)


def __dir__() -> list[str]:
    return __all__
