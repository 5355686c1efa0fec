"""Errors raised while reading checkpoints.

Every failure to read a checkpoint is a :class:`CheckpointError` (a
``ValueError``) whose message starts with the file name, so a caller can catch
one type and a user reading the message knows which file and what is wrong.
"""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint file could not be read: corrupt, truncated, or unsupported.

    Attributes:
        path: the file, or ``None`` while the error is still on its way out of
            the code that has no file name (the reader adds it).
    """

    def __init__(self, message: str, path: str | None = None):
        self.message = message
        self.path = None
        super().__init__(message)
        if path is not None:
            self.add_path(path)

    def add_path(self, path: str) -> None:
        """Prefix the message with ``path`` unless a path is already there."""
        if self.path is None:
            self.path = path
            self.args = (f"{path}: {self.message}",)


class UnsafeGlobalError(CheckpointError):
    """A pickle names a global (a class or function) that is not allowed.

    Attributes:
        global_name: the dotted ``module.name`` the pickle asked for, after
            mapping Python 2 names (``__builtin__`` -> ``builtins``).
    """

    def __init__(self, global_name: str, spelled: str | None = None):
        self.global_name = global_name
        written = f" (written as '{spelled}')" if spelled and spelled != global_name else ""
        module = global_name.rpartition(".")[0] or global_name
        super().__init__(
            f"refusing to load the global '{global_name}'{written}: it is not on the "
            "allowlist of data types and tensor rebuild functions. Nothing was imported "
            "or called. If you trust this file, load it with "
            f"allow=('{global_name}',) or a pattern such as allow=('{module}.*',); "
            "allowed globals are rebuilt as inert PickledObject records, never imported "
            "or called."
        )
