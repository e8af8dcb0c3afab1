"""Publishing a file so that readers see either nothing or the whole file, never a half-written one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed onto ``target``, on error removed.

    The temporary file sits in the same folder so the rename stays on one file system (and is atomic);
    its name starts with a dot and ends in ``.partial`` so sweepers and listings can tell it apart.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def write_atomically(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` through :func:`atomic_path`; returns ``target`` as a Path."""
    with atomic_path(target) as partial:
        partial.write_bytes(data)
    return Path(target)
