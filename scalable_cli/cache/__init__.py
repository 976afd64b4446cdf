"""Result caching that is never wrong: ``@cacheable`` and what it stands on.

One concept per module (import them directly; this package imports nothing, so
``import scalable`` stays cheap):

- ``types``: ``FileType`` / ``DirType`` markers (hash a path's *content*).
- ``keys``: the cache key of one call: function identity + code, bound arguments,
  declared types, ``SCALABLE_SEED``; BLAKE2b-256.
- ``entry``: the on-disk entry format (header, payload, checksum).
- ``store``: the local store (atomic writes, LRU size limit, usage statistics).
- ``remote``: an S3 store behind the local one (``SCALABLE_CACHE_REMOTE``).
- ``config``: where the cache lives, from the environment the provider sets.
- ``decorator``: ``cacheable`` and ``CachedFunction``.
- ``planning``: counting which of a list of calls are already cached.

See docs/guides/caching.rst.
"""
