"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class SocialpipeError(Exception):
    """A problem with the user's input or setup, stated as what was wrong and what is expected."""


class InputError(SocialpipeError, ValueError):
    """An input file or value is malformed or inconsistent with the video."""


class NoAudioError(InputError):
    """The video has no audio stream, so the speech stage cannot run."""


def first_line(exc: BaseException | str, limit: int | None = 120) -> str:
    """The first non-empty line of an exception's message (or a text), at most ``limit`` characters;
    the exception's type name when the message is empty."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    return text.splitlines()[0][:limit]
