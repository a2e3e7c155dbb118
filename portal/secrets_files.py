"""Small secret files the portal makes for itself on `portal init` (mode 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def ensure_key_file(path: Path, nbytes: int = 32) -> bytes:
    """Read a random key from `path`, creating it first (atomically, 0600) if absent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(nbytes))
    return bytes.fromhex(path.read_text().strip())
