"""Errors a user can act on: the CLI prints them as one line and exits with code 1.

One class per kind of failure that some code tells apart, so that callers catch by type and never match
the text of a message.
"""

from __future__ import annotations


class VaelabError(Exception):
    """A failure with a message meant for the user (what went wrong and where)."""


class DataError(VaelabError):
    """A data file or data set is missing, corrupt or of the wrong shape."""


class ChecksumMismatch(DataError):
    """A file's content is not the published file's: its SHA-256 differs (a corrupt or altered copy, or
    another file under the same name)."""


class DownloadError(DataError):
    """No mirror served a file: one reason per mirror (network, HTTP, damaged or wrong content)."""


class ConfigError(VaelabError):
    """A configuration value or name is not valid."""


class CheckpointError(VaelabError):
    """A checkpoint is missing, corrupt, unsafe or belongs to another model."""


class TrainingDiverged(VaelabError):
    """The loss became NaN or infinite."""
