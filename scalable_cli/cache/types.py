"""Argument types whose cache key is the *content* at a path, not the path string."""

from __future__ import annotations


class FileType:
    """Declare an argument as a path to a file: its bytes are hashed (streamed).

    The value passed to the function is unchanged (the path); renaming or moving the
    file keeps the key, editing it changes the key.
    """


class DirType:
    """Declare an argument as a path to a directory: every file's path *relative to the
    directory* and bytes are hashed, in sorted order, so the same tree anywhere has
    the same key and any added, removed, renamed or edited file changes it."""


PATH_TYPES = (FileType, DirType)
