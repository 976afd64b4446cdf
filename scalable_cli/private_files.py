"""Files only their owner may read: whatever holds environment values, tokens or keys.

Everything scalable writes under ``.scalable/`` is private: folders 0700, files 0600,
whatever the umask. On a shared file system (an HPC home or project folder) the folder
modes are what keep other users out of job scripts whose ``export`` lines carry the
manifest's ``env:`` values, TLS keys, the client config and logs. One helper for all of
it, so a new writer cannot forget.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from scalable.state.store import atomic_write

DIR_MODE = 0o700
FILE_MODE = 0o600
ROOT_NAME = ".scalable"


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) a folder only its owner can enter.

    Missing folders are created 0700 one by one (``mkdir(parents=True)`` would make
    the parents with the umask's mode). ``path`` itself and its ancestors up to the
    ``.scalable`` folder it is in are tightened to 0700 if an older version (or the
    umask) left them open; folders we do not own are left alone.
    """
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        with suppress(FileExistsError):  # another process made it first
            d.mkdir(mode=DIR_MODE)
    chain = [path]
    if path.name != ROOT_NAME and any(a.name == ROOT_NAME for a in path.parents):
        for a in path.parents:  # up to the .scalable root, inclusive
            chain.append(a)
            if a.name == ROOT_NAME:
                break
    for d in chain:
        _tighten(d, DIR_MODE)
    return path


def _tighten(path: Path, mode: int) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_uid == os.getuid() and st.st_mode & 0o777 != mode:
        os.chmod(path, mode)


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``path`` atomically, mode 0600, in a private folder."""
    private_dir(path.parent)
    atomic_write(path, data.encode() if isinstance(data, str) else data, mode=FILE_MODE)
