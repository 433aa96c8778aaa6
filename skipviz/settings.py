"""Settings read from the environment: FAST mode (SKIPVIZ_FAST), progress bars (SKIPVIZ_PROGRESS)
and the cache folder (SKIPVIZ_CACHE)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "fast_mode", "progress_bars"]


def fast_mode() -> bool:
    """True when SKIPVIZ_FAST=1: notebooks shrink sizes and steps, and progress bars stay off."""
    return os.environ.get("SKIPVIZ_FAST", "0") == "1"


def progress_bars() -> bool:
    """Whether training shows progress bars: not in FAST mode, and not when SKIPVIZ_PROGRESS=0
    (set by `make notebooks`, so stored outputs hold no finished bars)."""
    return not fast_mode() and os.environ.get("SKIPVIZ_PROGRESS", "1") != "0"


def cache_dir() -> Path:
    """The folder for cached data and trained weights: $SKIPVIZ_CACHE, else
    $XDG_CACHE_HOME/skipviz, else ~/.cache/skipviz (a leading ~ is expanded in each).

    The folder is made when something is first saved; if it cannot be written, skipviz warns
    once and carries on without caching.
    """
    root = os.environ.get("SKIPVIZ_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        root = os.path.join(base, "skipviz")
    return Path(os.path.expanduser(root))
