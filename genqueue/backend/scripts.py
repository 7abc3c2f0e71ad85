"""The worker's Lua moves, registered once per connection and script.

A script is plain `EVALSHA` (redis-py's Script: the SHA is computed once; a server that lost its script
cache — a restart — gets the script again on NOSCRIPT), unless it was composed with `compose(helpers...,
body)`: then it is a Redis Function. An EVAL script runs its whole chunk on every call, so each helper it
includes (`limits.lua` alone has dozens) is created again as a Lua closure on every move, about 0.4 µs each on
Valkey. A function library runs its helpers' definitions once, when it is loaded; each call runs only the
body. Same code, same atomicity; the hot moves (the pop, the start claim, the guarded end) use it.

How a function is kept:
- its library is named after the SHA-1 of its source (`gq_<sha>`), so two genqueue versions on one server
  (a rolling deploy) each call their own, and a library is never replaced under a running worker;
- it is loaded on the first call from each connection (`FUNCTION LOAD`; "already exists" is fine). Loaded
  libraries are replicated and persisted like data (AOF, RDB, a replica's full sync), so a promoted replica
  has them; one that does not — a restarted server that keeps nothing on disk, `FUNCTION FLUSH` — answers
  "Function not found", and the call loads the library and runs once more, as redis-py does on NOSCRIPT;
- a server without functions (before Redis 7) or a user whose ACL denies `FUNCTION` makes this connection
  run every such script as plain EVALSHA from then on (logged once): the same source runs either way;
- inside a pipeline or MULTI (the dead-letter move's release) the script is sent as EVALSHA, which redis-py
  makes sure the server has before the transaction starts.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import NoPermissionError, ResponseError

from ..support.logs import get_logger

log = get_logger("genqueue.backend")

BODY = "\n-- genqueue: body\n"  # between a composed script's helpers and its body (a comment: EVAL runs it as is)
_cache: dict[tuple[int, str], Any] = {}


def compose(*parts: str) -> str:
    """A script of helpers (every part but the last: definitions only — local functions and constants) and a
    body (the last part, which reads KEYS and ARGV and returns), run as a Redis Function where the server has
    them."""
    *helpers, body = parts
    return "".join(helpers) + BODY + body


def registered(connection: Redis, source: str):
    key = (id(connection), source)
    script = _cache.get(key)
    if script is None or script.registered_client is not connection:
        script = connection.register_script(source)
        if BODY in source:
            script = Function(connection, source, script)
        _cache[key] = script
    return script


def library_of(name: str, source: str) -> str:
    """The function library for a composed script: its helpers defined once, its body as the function (KEYS
    and ARGV, globals in EVAL, are the library's locals, set on each call: the helpers read them too)."""
    helpers, body = source.split(BODY, 1)
    return (
        f"#!lua name={name}\nlocal KEYS, ARGV\n{helpers}\n"
        f"redis.register_function('{name}', function(keys, args)\nKEYS, ARGV = keys, args\n{body}\nend)\n"
    )


def function_missing(exc: Exception) -> bool:
    return isinstance(exc, ResponseError) and "function not found" in str(exc).lower()


def functions_unavailable(exc: Exception) -> bool:
    """The server cannot load functions for this user: no FUNCTION command (before Redis 7) or an ACL."""
    text = str(exc).lower()
    return isinstance(exc, NoPermissionError) or (isinstance(exc, ResponseError) and "unknown command" in text)


class Function:
    """A composed script called as a Redis Function (FCALL), with its EVALSHA twin for where that cannot be."""

    def __init__(self, connection: Redis, source: str, script: Any) -> None:
        self.registered_client = connection
        self.script = source
        self.sha = script.sha  # durable.run_script and pipelines send the EVALSHA twin
        self.name = "gq_" + hashlib.sha1(source.encode()).hexdigest()
        self.library = library_of(self.name, source)
        self._eval = script
        self._loaded = False

    def __call__(self, keys: list | None = None, args: list | None = None, client: Any = None) -> Any:
        keys, args = keys or [], args or []
        client = self.registered_client if client is None else client
        if isinstance(client, Pipeline) or getattr(self.registered_client, "_genqueue_eval_only", False):
            return self._eval(keys=keys, args=args, client=client)
        if not self._loaded:
            if not self._load():
                return self._eval(keys=keys, args=args, client=client)
        try:
            return client.fcall(self.name, len(keys), *keys, *args)
        except ResponseError as exc:
            if not function_missing(exc):
                raise
        self._load()  # the server lost it (a restart that keeps nothing, FUNCTION FLUSH): load, call once more
        return client.fcall(self.name, len(keys), *keys, *args)

    def _load(self) -> bool:
        """Load the library (already there is fine); False when this server or user cannot have functions."""
        try:
            self.registered_client.function_load(self.library)
        except ResponseError as exc:
            if functions_unavailable(exc):
                self.registered_client._genqueue_eval_only = True  # type: ignore[attr-defined]
                log.info("scripts.eval_only", why=str(exc)[:200])
                return False
            if "already exists" not in str(exc):
                raise
        self._loaded = True
        return True
