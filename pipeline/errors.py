"""Errors a user can cause, each with the exit code the CLI ends with."""

from __future__ import annotations


class ShoalError(Exception):
    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(ShoalError):
    exit_code = 2


class ServiceUnavailable(ShoalError):
    exit_code = 3


def printable(text: str) -> str:
    """Text that any terminal, JSON and database takes: bytes of a file name that were not
    UTF-8 (which Python keeps as surrogates) shown as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
