"""Redis replies as genqueue's clients get them.

redis-py types a reply as `bytes | str` (a client made with `decode_responses=True` gets text), and some
compound replies as unions of every protocol's shape. genqueue's clients never decode (RQ's job hashes are
read as bytes), so a reply is bytes: `text` reads one as text, and the reply shapes below name what a
command returns here, for a `cast` where redis-py's type is wider than that."""

from __future__ import annotations

StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]  # XRANGE / XREVRANGE
ScoredMembers = list[tuple[bytes, float]]  # Z*RANGE* ... WITHSCORES


def text(reply: bytes | str) -> str:
    """A reply (a key, a field, a value) as text, from UTF-8."""
    return reply.decode() if isinstance(reply, bytes) else reply
