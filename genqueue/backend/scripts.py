"""redis-py Script objects, registered once per connection and script (the SHA is computed once; a server
that lost its script cache — a restart — gets the script again from redis-py on NOSCRIPT)."""

from __future__ import annotations

from typing import Any

from redis import Redis

_cache: dict[tuple[int, str], Any] = {}


def registered(connection: Redis, source: str):
    key = (id(connection), source)
    script = _cache.get(key)
    if script is None or script.registered_client is not connection:
        script = _cache[key] = connection.register_script(source)
    return script
