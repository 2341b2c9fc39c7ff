"""Writing files so a crash never leaves half of one: a temp file beside the target, then a rename."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


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
