"""Errors in user input: `SpecError`, shown by the CLI as one line, and `first_line` to make one;
and `StagesFailed`, the end of a run in which stages failed.

A module of its own, importing nothing: every layer raises it (spec, data, models, checks) without
depending on another layer for it. `w2s.spec` re-exports both names.
"""

from __future__ import annotations


class SpecError(ValueError):
    """A problem with the user's input; the CLI prints it as one line and exits with code 2."""


class StagesFailed(RuntimeError):
    """Stages of a run failed (or need one that did); the others finished. The CLI prints it as one
    line and exits with code 1."""


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line (or its type when it has none), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
