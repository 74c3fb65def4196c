"""Exceptions the core raises: each says what went wrong, where, and the fix."""

from __future__ import annotations


class BetaVAEError(Exception):
    """Base class: the CLI prints these as one clear message, not a traceback."""


class DataError(BetaVAEError, ValueError):
    """Input data is malformed (NaN, wrong shape, values outside a likelihood's support)."""


class ConfigError(BetaVAEError, ValueError):
    """An option or a combination of options is invalid."""


class NotRegisteredError(ConfigError, LookupError):
    """No plugin registered a thing of that name."""


class PluginError(BetaVAEError):
    """A plugin failed to load, registered a clashing name, or raised inside a hook."""

    def __init__(self, message: str, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


class MissingDependencyError(PluginError):
    """A plugin's optional dependencies (its install extra) are not installed: the plugin
    is listed as unavailable with the pip command, without a warning on every command."""


class CheckpointError(BetaVAEError):
    """A checkpoint is unsafe to load, corrupt, or does not match the model."""


class OutputExistsError(BetaVAEError, FileExistsError):
    """An output location already holds results that must not be overwritten."""


class NonFiniteLossError(BetaVAEError, FloatingPointError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""
