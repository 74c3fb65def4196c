"""betavae: a small β-VAE core with pluggy hooks for domains.

β is the price of information: every fit reports rate (KL per latent dimension) and
distortion (−log p(x|z)) separately. Plugins bring data loaders, likelihoods,
evaluations, architectures and candidate generators through the `betavae`
entry-point group; see `betavae_core.hookspecs` for the contract.
"""

from .architectures import ArchitectureRequest, EncoderOutput
from .data import DomainData
from .errors import (
    BetaVAEError,
    CheckpointError,
    ConfigError,
    DataError,
    NonFiniteLossError,
    NotRegisteredError,
    OutputExistsError,
    PluginError,
)
from .evaluate import evaluate, evaluate_run
from .generate import generate, sample
from .hookspecs import Register, hookimpl
from .likelihoods import Likelihood
from .model import BetaVAE, LossRecord, ModelConfig
from .objective import Objective
from .plugins import get_host, plugin_infos, registry, reset_plugins
from .registry import Architecture, Dataset, Evaluation, Generator, LikelihoodSpec, Loader
from .results import CandidateReport, EvaluationResult, GeneratedSamples
from .rows import RowSource, SparseRows
from .runs import Run, load_model, load_run
from .sources import load_data
from .sweep import sweep
from .trainer import FitResult, TrainConfig, fit

__all__ = [
    "Architecture", "ArchitectureRequest", "BetaVAE", "BetaVAEError", "CandidateReport",
    "CheckpointError", "ConfigError", "DataError", "Dataset", "DomainData", "EncoderOutput",
    "Evaluation", "EvaluationResult", "FitResult", "GeneratedSamples", "Generator",
    "Likelihood", "LikelihoodSpec", "Loader", "LossRecord", "ModelConfig",
    "NonFiniteLossError", "NotRegisteredError", "Objective", "OutputExistsError",
    "PluginError", "Register", "RowSource", "Run", "SparseRows", "TrainConfig", "evaluate",
    "evaluate_run", "fit", "generate",
    "get_host", "hookimpl", "load_data", "load_model", "load_run", "plugin_infos",
    "registry", "reset_plugins", "sample", "sweep",
]
