"""Studio errors. All are :class:`prefkit.errors.InputError`, so the CLI prints one line, exit 2."""

from __future__ import annotations

from prefkit.errors import InputError


class StudioError(InputError):
    """A project, database, server or request problem a user can fix (message says how)."""


class TaskRefused(StudioError):
    """A vote or request that the store refuses (not the annotator's task, expired, bad field).

    ``status`` is the HTTP status the web app answers with.
    """

    def __init__(self, message: str, *, status: int = 400, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status
