"""Errors a user can act on: the CLI prints them as one line and exits with code 1."""

from __future__ import annotations


class VaelabError(Exception):
    """A failure with a message meant for the user (what went wrong and where)."""


class DataError(VaelabError):
    """A data file or data set is missing, corrupt or of the wrong shape."""


class ConfigError(VaelabError):
    """A configuration value or name is not valid."""


class CheckpointError(VaelabError):
    """A checkpoint is missing, corrupt, unsafe or belongs to another model."""


class TrainingDiverged(VaelabError):
    """The loss became NaN or infinite."""
