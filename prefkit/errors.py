"""Errors that carry where bad input came from (file, line, field)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message names the file, line (1-based) and field where known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file, self.line, self.field, self.reason = file, line, field, message
        where = ""
        if file is not None:
            where = str(file)
            if line is not None:
                where += f":{line}"
        if field is not None:
            where += f" [{field}]" if where else f"[{field}]"
        super().__init__(f"{where}: {message}" if where else message)


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""
