"""Files in the cache folder: written atomically, read with torch.load(weights_only=True) and checked
against the key they were saved under. A caller treats any exception from `load` as "no cache"."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch


def save(path: Path, key: str, fmt: int, blob: dict[str, Any]) -> None:
    """Write {'format', 'key', **blob} to `path`; a crash never leaves half a file under that name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({"format": fmt, "key": key, **blob}, buf)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def load(path: Path, key: str, fmt: int) -> dict[str, Any]:
    """The dict saved under `key`; ValueError (or torch's own error) if the file is not that.

    weights_only=True: a cache file can hold tensors, numbers, strings and containers of them,
    never code to run.
    """
    blob = torch.load(path, weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != fmt or blob.get("key") != key:
        raise ValueError("the file belongs to another configuration")
    return blob
