"""Errors a user can cause: the CLI prints them as one line, without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class OmniBenchError(Exception):
    """A mistake in input (a name, a file, a setting) that the user can fix."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> OmniBenchError:
    choices = sorted(choices)
    return OmniBenchError(
        f"unknown {kind} {name!r}{did_you_mean(name, choices)}; known: {', '.join(choices) or 'none'}"
    )


class ItemTimeout(Exception):
    """An item (or the batch computing its single points) ran past ``--item-timeout``."""


class StopTask(Exception):
    """Raised by a protocol when no later item of the task can succeed either (e.g. out of memory on a
    growing size ladder): the item is recorded as failed and the remaining ones as skipped, with the reason."""
