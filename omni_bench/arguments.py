"""Argument types shared by the sub-commands and the executors' options."""

from __future__ import annotations

import argparse
from pathlib import Path


def path_argument(text: str) -> Path:
    """A file or folder option: an empty value would silently mean the current folder, so it is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file or folder name (. for this folder)")
    if "\0" in text:
        raise argparse.ArgumentTypeError("a path with a NUL character")
    return Path(text)
