"""Files in the cache folder: written atomically with a checksum of their contents, read with
torch.load(weights_only=True) and checked against the key they were saved under and the checksum.
A caller treats any exception from `load` as "no cache" and rebuilds the file.

If the cache folder cannot be written (a read-only home, a full disk), `save` warns once and
returns False: the result is still returned to the user, only not stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import SkipvizValueError

_WARNED: set[str] = set()


def checksum(value: Any) -> str:
    """sha256 over the tensors, numbers and strings in `value` (dicts by sorted key), hex."""
    h = hashlib.sha256()

    def feed(v: Any) -> None:
        if isinstance(v, torch.Tensor):
            if v.layout != torch.strided:
                raise SkipvizValueError(f"a {v.layout} tensor where a dense one belongs")
            t = v.detach().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(v, dict):
            h.update(f"D{len(v)}".encode())
            for k in sorted(v, key=str):
                h.update(f"K{k!r}".encode())
                feed(v[k])
        elif isinstance(v, (list, tuple)):
            h.update(f"L{len(v)}".encode())
            for item in v:
                feed(item)
        else:
            h.update(f"V{type(v).__name__}{v!r}".encode())

    feed(value)
    return h.hexdigest()


def save(path: Path, key: str, fmt: int, blob: dict[str, Any]) -> bool:
    """Write {'format', 'key', 'checksum', **blob} to `path`; a crash never leaves half a file
    under that name. Returns False (after one warning per folder) if the folder is not writable."""
    record = {"format": fmt, "key": key, **blob}
    record["checksum"] = checksum(blob)
    buf = io.BytesIO()
    torch.save(record, buf)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
    except OSError as err:
        folder = str(path.parent)
        if folder not in _WARNED:
            _WARNED.add(folder)
            warnings.warn(f"skipviz cannot write to its cache folder {folder} ({err.strerror or err}); "
                          "carrying on without caching (set SKIPVIZ_CACHE to a writable folder)",
                          stacklevel=3)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return False
    return True


def load(path: Path, key: str, fmt: int) -> dict[str, Any]:
    """The dict saved under `key`; ValueError (or torch's own error) if the file is not that.

    weights_only=True: a cache file can hold tensors, numbers, strings and containers of them,
    never code to run. The checksum catches a file damaged after it was written.
    """
    record = torch.load(path, weights_only=True)
    if not isinstance(record, dict) or record.get("format") != fmt or record.get("key") != key:
        raise SkipvizValueError("the file belongs to another configuration")
    stored = record.pop("checksum", None)
    blob = {k: v for k, v in record.items() if k not in ("format", "key")}
    if stored != checksum(blob):
        raise SkipvizValueError("its checksum does not match its contents (the file is damaged)")
    return record
