"""Text from files (labels, task names, item ids) made safe to show: every writer that puts such text on a
terminal, in XML or in Markdown passes it through ``printable`` first, so that a control character cannot move
the cursor or clear the screen, break a file's syntax, or (as a lone surrogate) fail the write."""

from __future__ import annotations

import unicodedata


def short_repr(value: object, width: int = 60) -> str:
    """``repr(value)`` cut to ``width`` characters, for an error that shows what a file held."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def printable(text: object) -> str:
    """``text`` with every character that is not printable (control and format characters, lone surrogates,
    line and paragraph separators; spaces stay) written as its Python escape, e.g. ``\\x1b``."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or unicodedata.category(c) == "Zs" else repr(c)[1:-1] for c in text)
