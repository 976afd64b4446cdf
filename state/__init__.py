"""State: what scalable created, stored atomically and locked per target."""

from scalable.state.lock import LockInfo, LockTimeout
from scalable.state.model import FORMAT_VERSION, ResourceRecord, StateFile
from scalable.state.store import LocalStore, StateStore

__all__ = [
    "FORMAT_VERSION",
    "LocalStore",
    "LockInfo",
    "LockTimeout",
    "ResourceRecord",
    "StateFile",
    "StateStore",
]
