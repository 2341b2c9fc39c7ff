"""Writing files so a crash never leaves half of one: a temp file beside the target, then a rename."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


class OutputError(Exception):
    """A folder that results cannot be written to."""


def writable_folder(folder) -> Path:
    """Create `folder` and make a file in it, so that a long job fails at its start, not at its first save."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OutputError(f"cannot write to {folder} ({err.strerror or err})") from None
    return folder


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
