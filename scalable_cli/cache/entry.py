"""One cache entry as bytes: a header, the pickled result and a checksum over both.

Layout::

    b"SCALCACHE1\\n" | u32 header length | header (JSON) | payload (pickle) | 16-byte BLAKE2b

The checksum is what makes a torn or corrupted entry read as *invalid* rather than as a
wrong result: a write cut short (kill -9, a full disk, a power cut after rename without
fsync) or a flipped bit fails it, and the reader treats the entry as a miss. The header
records what ``scalable cache`` shows (function, created, the miss's duration) without
unpickling the payload.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from dataclasses import dataclass
from typing import Any

MAGIC = b"SCALCACHE1\n"
_LEN = struct.Struct("<I")
SUM_BYTES = 16


class CorruptEntry(ValueError):
    pass


@dataclass(frozen=True)
class Header:
    function: str  # module.qualname
    key: str
    created: float
    duration: float  # seconds the miss took to compute: the time a hit saves
    size: int = 0  # payload bytes

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()


def _checksum(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=SUM_BYTES).digest()


def encode(header: Header, value: Any) -> bytes:
    """The entry's bytes; raises whatever pickling ``value`` raises."""
    try:
        import cloudpickle

        payload = cloudpickle.dumps(value, protocol=5)
    except ImportError:  # pragma: no cover - cloudpickle comes with distributed
        payload = pickle.dumps(value, protocol=5)
    head = Header(
        header.function, header.key, header.created, header.duration, len(payload)
    ).to_json()
    body = MAGIC + _LEN.pack(len(head)) + head + payload
    return body + _checksum(body)


def decode_header(data: bytes) -> tuple[Header, int]:
    """The header and the payload's offset; raises CorruptEntry."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _LEN.size + SUM_BYTES:
        raise CorruptEntry("not a scalable cache entry (bad magic or truncated)")
    n = _LEN.unpack_from(data, len(MAGIC))[0]
    start = len(MAGIC) + _LEN.size
    try:
        raw = json.loads(data[start : start + n])
        header = Header(**raw)
    except (ValueError, TypeError) as exc:
        raise CorruptEntry(f"unreadable header: {exc}") from None
    return header, start + n


def decode(data: bytes, key: str | None = None) -> tuple[Header, Any]:
    """Verify the checksum, then unpickle; raises CorruptEntry on any mismatch."""
    view = memoryview(data)
    if len(data) < SUM_BYTES or _checksum(view[:-SUM_BYTES]) != data[-SUM_BYTES:]:
        raise CorruptEntry("checksum mismatch (a torn write or a damaged file)")
    header, offset = decode_header(data)
    if key is not None and header.key != key:
        raise CorruptEntry(f"entry holds key {header.key[:12]}…, not {key[:12]}…")
    try:
        value = pickle.loads(view[offset:-SUM_BYTES])
    except Exception as exc:
        raise CorruptEntry(f"payload cannot be unpickled: {exc}") from None
    return header, value
