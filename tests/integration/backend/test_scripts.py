"""Composed scripts (backend/scripts.py) on a real server: a Redis Function loaded once and called by name,
loaded again when the server lost it, and plain EVALSHA where functions cannot be (an ACL without FUNCTION,
a pipeline). A server of this module's own, so its command counts are these tests' alone."""

from __future__ import annotations

import uuid

import pytest

from genqueue.backend.connection import EmbeddedServer, connect_url
from genqueue.backend.scripts import compose, registered

# A helper that reads ARGV itself (as limits.lua's and usage's helpers do), and a body that reads KEYS.
HELPERS = "local function first_twice() return ARGV[1] .. ARGV[1] end\n"


def source(tag: str) -> str:
    return compose(HELPERS, f"return {{first_twice(), KEYS[1] or '', '{tag}'}}\n")


@pytest.fixture(scope="module")
def own_url(tmp_path_factory):
    server = EmbeddedServer(tmp_path_factory.mktemp("scripts-srv"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def conn(own_url):
    client = connect_url(own_url)
    yield client
    client.close()


def calls(conn, command: str) -> int:
    return int(conn.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def libraries(conn) -> set[str]:
    """FUNCTION LIST's library names (RESP2: each library a flat [name, value, ...] list)."""
    found = set()
    for lib in conn.function_list():
        fields = dict(zip(lib[::2], lib[1::2], strict=False))
        found.add(fields[b"library_name"].decode())
    return found


def test_a_composed_script_is_a_function_loaded_once_and_called_by_name(conn):
    script = registered(conn, source(uuid.uuid4().hex))
    fcall, evalsha = calls(conn, "fcall"), calls(conn, "evalsha")
    assert script(keys=["k"], args=["ab"])[:2] == [b"abab", b"k"]
    assert script(keys=[], args=["c"])[:2] == [b"cc", b""]
    assert calls(conn, "fcall") == fcall + 2
    assert calls(conn, "evalsha") == evalsha
    assert script.name in libraries(conn)


def test_two_versions_of_a_script_are_two_libraries_side_by_side(conn):
    """A rolling deploy: the old workers' library is never replaced under them."""
    old, new = registered(conn, source("v1")), registered(conn, source("v2"))
    assert old(args=["x"])[2] == b"v1" and new(args=["x"])[2] == b"v2"
    assert old.name != new.name and {old.name, new.name} <= libraries(conn)
    assert old(args=["y"])[2] == b"v1"


def test_a_server_that_lost_the_library_gets_it_again_on_the_next_call(conn):
    script = registered(conn, source(uuid.uuid4().hex))
    assert script(args=["a"])[0] == b"aa"
    conn.function_flush()  # what a restart that keeps nothing on disk leaves
    assert script.name not in libraries(conn)
    assert script(args=["b"])[0] == b"bb"
    assert script.name in libraries(conn)


def test_a_user_denied_function_runs_the_same_script_as_evalsha(conn, own_url):
    user, password = f"nofn-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    conn.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"], commands=["+@all", "-function"]
    )
    limited = connect_url(own_url.replace("unix://", f"unix://{user}:{password}@"))
    try:
        script = registered(limited, source(uuid.uuid4().hex))
        fcall, evalsha = calls(conn, "fcall"), calls(conn, "evalsha")
        assert script(keys=["k"], args=["z"])[:2] == [b"zz", b"k"]
        assert script(args=["w"])[0] == b"ww"
        assert calls(conn, "fcall") == fcall
        assert calls(conn, "evalsha") - evalsha in (2, 3)  # the first may be answered NOSCRIPT and sent again
        assert script.name not in libraries(conn)
    finally:
        limited.close()
        conn.acl_deluser(user)


def test_inside_a_transaction_the_script_is_sent_as_evalsha(conn):
    """redis-py loads a pipeline's scripts before MULTI; a function missing inside EXEC would fail alone."""
    script = registered(conn, source(uuid.uuid4().hex))
    key = f"t-{uuid.uuid4().hex}"
    with conn.pipeline(transaction=True) as pipe:
        pipe.set(key, "1")
        script(keys=[key], args=["q"], client=pipe)
        _, reply = pipe.execute()
    assert reply[:2] == [b"qq", key.encode()]
    assert script.name not in libraries(conn)  # never called as a function: nothing was loaded
    conn.delete(key)
