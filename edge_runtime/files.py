"""Writing files so a crash never leaves half of one: a temp file beside the target, then a rename."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from edge_runtime.errors import EdgeSRError


class OutputError(EdgeSRError):
    """A folder that results cannot be written to."""


def check_writable(folder) -> None:
    """Raise OutputError unless files can be made in `folder` (or, where it does not exist yet, in its nearest
    existing parent), so that a long job fails at its start, not at its first save. Leaves nothing behind."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write to {folder} ({existing} is not a folder)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise OutputError(f"cannot write to {folder} ({err.strerror or err})") from None


def write_atomic(path, data: str | bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


def write_json(path, data, indent: int = 2) -> Path:
    return write_atomic(path, json.dumps(data, indent=indent) + "\n")


def sha256(path) -> str:
    """Hex digest of a file: how cards and checkpoints name the exact file they came from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
