"""Hostile or unusual input through HTTP: every refusal is the error envelope with its status, and a refused
request leaves nothing behind in Redis."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.api.test_auth import error


def nested_payload(depth: int) -> str:
    """A valid payload's JSON text whose objects and arrays nest `depth` levels (the payload is level 1)."""
    arrays = depth - 2
    return '{"prompt": "x", "params": {"a": ' + "[" * arrays + "]" * arrays + "}}"


def rq_jobs(conn) -> int:
    return sum(1 for _ in conn.scan_iter("rq:job:*", count=1000))


@pytest.mark.parametrize("depth", [65, 800, 5000, 100_000])
def test_deeply_nested_json_is_400_everywhere_and_stores_nothing(client, token, conn, settings, depth):
    h = {**token(), "content-type": "application/json"}
    payload = nested_payload(depth)
    before = rq_jobs(conn)
    run_id = f"deep-{uuid.uuid4().hex[:8]}"
    bodies = [
        ("application/json", f'{{"run_id": "{run_id}", "items": [{payload}]}}'),
        ("application/json", "[" + payload + "]"),
        ("application/x-ndjson", '{"prompt": "fine"}\n' + payload),
    ]
    for content_type, body in bodies:
        r = client.post(f"/api/runs?run_id={run_id}", headers={**h, "content-type": content_type}, content=body)
        error(r, 400, "VALIDATION_ERROR")
    job_id = f"deep-job-{uuid.uuid4().hex[:8]}"
    error(
        client.post("/api/jobs", headers=h, content=f'{{"job_id": "{job_id}", "payload": {payload}}}'),
        400,
        "VALIDATION_ERROR",
    )
    assert client.get(f"/api/runs/{run_id}", headers=h).status_code == 404
    assert client.get(f"/api/jobs/{job_id}", headers=h).status_code == 404
    assert conn.llen(f"rq:queue:{settings.queue}") == 0 and rq_jobs(conn) == before


def test_nesting_up_to_the_limit_is_accepted(client, token):
    from genqueue.tasks.generate import MAX_PAYLOAD_DEPTH

    payload = nested_payload(MAX_PAYLOAD_DEPTH)
    assert json.loads(payload)  # the fixture itself is valid JSON
    r = client.post("/api/runs", headers={**token(), "content-type": "application/x-ndjson"}, content=payload)
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/jobs", headers={**token(), "content-type": "application/json"}, content=f'{{"payload": {payload}}}'
    )
    assert r.status_code == 201, r.text


LIMIT = 1024 * 1024


def chunked(total: int, piece: bytes = b" " * 65536):
    """A body with no Content-Length: httpx sends a generator with Transfer-Encoding: chunked."""

    def body():
        left = total
        while left > 0:
            yield piece[:left]
            left -= len(piece)

    return body()


def ui_login(client, conn, sub: str, *, tenant: str | None = None, admin: bool = False) -> str:
    """A dashboard session for `sub` (the cookie is kept by the client); returns its CSRF token."""
    from genqueue.api.ui import sessions
    from genqueue.tenants.tenancy import ADMIN_ROLE, Principal

    code = sessions.create_login(conn, Principal(sub, tenant or sub, frozenset({ADMIN_ROLE} if admin else set())))
    r = client.get(f"/ui/login?code={code}", follow_redirects=False)
    assert r.status_code == 303, r.text
    return sessions.load_session(conn, r.cookies[sessions.COOKIE]).csrf


def oversized_requests(h: dict, run_id: str, job_id: str) -> list[tuple[str, str, dict]]:
    json_h = {**h, "content-type": "application/json"}
    return [
        ("POST", f"/api/runs?run_id={run_id}", json_h),
        ("POST", f"/api/runs?run_id={run_id}", {**h, "content-type": "application/x-ndjson"}),
        ("POST", "/api/jobs", json_h),
        ("POST", f"/api/jobs/{job_id}/retry", json_h),
        ("POST", "/api/dlq/retry", json_h),
        ("POST", f"/ui/dlq/{job_id}/retry", {"content-type": "application/x-www-form-urlencoded"}),
        ("POST", "/ui/logout", {"content-type": "application/x-www-form-urlencoded"}),
    ]


def test_an_oversized_chunked_body_is_413_on_every_route_and_changes_nothing(client, token, conn, settings):
    from genqueue.backend import audit

    sub = f"big-{uuid.uuid4().hex[:8]}"
    h = token(sub, admin=True)
    ui_login(client, conn, sub, admin=True)
    run_id, job_id = f"big-{uuid.uuid4().hex[:8]}", f"big-job-{uuid.uuid4().hex[:8]}"
    before, audited = rq_jobs(conn), len(audit.recent(conn, 1000))
    for method, path, headers in oversized_requests(h, run_id, job_id):
        r = client.request(method, path, headers=headers, content=chunked(LIMIT + 1))
        assert "content-length" not in {k.lower() for k in r.request.headers}, path
        error(r, 413, "PAYLOAD_TOO_LARGE")
    # the same routes still take a chunked body under the limit
    r = client.post(
        f"/api/runs?run_id={run_id}",
        headers={**h, "content-type": "application/x-ndjson"},
        content=(line for line in (b'{"prompt": "a"}\n', b'{"prompt": "b"}\n')),
    )
    assert r.status_code == 201 and r.json()["data"]["items"] == 2, r.text
    assert rq_jobs(conn) == before + 2 and len(audit.recent(conn, 1000)) == audited + 1
    # nothing the refused requests would have done happened, the rate limit's count included: the 7
    # refusals count nothing; the accepted run and this request one each
    remaining = client.get("/api/jobs/nope", headers=h).headers["RateLimit-Remaining"]
    assert remaining == str(1000 - 2)
    assert client.get("/ui/", headers={}).status_code == 200  # the session was not logged out


def test_an_oversized_chunked_body_is_413_from_a_real_server(api_process, token, conn):
    import httpx

    api = api_process()
    h = token(f"big-{uuid.uuid4().hex[:8]}")
    run_id = f"big-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=api.url, headers=h, timeout=30) as http:
        for path, content_type in (
            (f"/api/runs?run_id={run_id}", "application/json"),
            ("/api/jobs", "application/json"),
            ("/ui/logout", "application/x-www-form-urlencoded"),
        ):
            r = http.post(path, headers={"content-type": content_type}, content=chunked(LIMIT + 1))
            error(r, 413, "PAYLOAD_TOO_LARGE")
        assert http.get(f"/api/runs/{run_id}").status_code == 404
        r = http.post(
            f"/api/runs?run_id={run_id}",
            headers={"content-type": "application/x-ndjson"},
            content=(line for line in (b'{"prompt": "a"}\n',)),
        )
        assert r.status_code == 201, r.text


def test_camel_case_secret_keys_are_masked_in_api_answers(client, token):
    payload = {
        "prompt": "a fox",
        "openaiApiKey": "sk-live-1",
        "params": {
            "accessToken": "at-2",
            "maxTokens": 5,
            "headers": {"X-Api-Key": "xk-3", "clientSecret": "cs-4"},
            "refreshToken": "rt-5",
        },
    }
    r = client.post("/api/jobs", headers=token(), json={"payload": payload})
    assert r.status_code == 201, r.text
    job_id = r.json()["data"]["id"]
    for answer in (r, client.get(f"/api/jobs/{job_id}", headers=token())):
        shown = answer.json()["data"]["payload"]
        assert shown["openaiApiKey"] == shown["params"]["accessToken"] == shown["params"]["refreshToken"] == "***"
        assert shown["params"]["headers"] == {"X-Api-Key": "***", "clientSecret": "***"}
        assert shown["params"]["maxTokens"] == 5 and shown["prompt"] == "a fox"
        assert not any(secret in answer.text for secret in ("sk-live-1", "at-2", "xk-3", "cs-4", "rt-5"))


@pytest.fixture
def limited_client(settings, conn):
    """The app with a rate limit of 5 a minute (as GENQUEUE_API_RATE_LIMIT=5/minute would set)."""
    from fastapi.testclient import TestClient

    from genqueue.api.app import create_app
    from genqueue.api.config import ApiConfig
    from tests.api.conftest import SECRET

    config = ApiConfig("HS256", SECRET, SECRET, True, rate_limit="5/minute")
    with TestClient(create_app(settings, config, conn), raise_server_exceptions=False) as c:
        yield c, config


def test_the_dashboard_shares_the_api_rate_limit_of_its_principal(limited_client, conn):
    from genqueue.api.auth import mint
    from genqueue.api.ui import sessions

    client, config = limited_client
    sub = f"ui-{uuid.uuid4().hex[:8]}"
    api = {"Authorization": f"Bearer {mint(config, sub=sub)}"}
    csrf = ui_login(client, conn, sub)
    statuses = [client.get("/api/jobs/nope", headers=api).status_code for _ in range(3)]
    statuses += [client.get("/ui/").status_code, client.get("/ui/jobs?id=nope").status_code]
    assert statuses == [404, 404, 404, 200, 404]
    page = client.get("/ui/")
    assert page.status_code == 429 and int(page.headers["Retry-After"]) >= 1, page.text
    assert page.headers["content-type"].startswith("text/html") and "Too many requests" in page.text
    assert page.headers["RateLimit-Remaining"] == "0"
    logout = client.post("/ui/logout", data={"csrf": csrf})
    assert logout.status_code == 429 and int(logout.headers["Retry-After"]) >= 1
    assert sessions.load_session(conn, client.cookies[sessions.COOKIE]) is not None  # the POST did nothing
    error(client.get("/api/jobs/nope", headers=api), 429, "RATE_LIMITED")
    # another principal has its own window, on both faces
    other = f"ui-{uuid.uuid4().hex[:8]}"
    ui_login(client, conn, other)
    assert client.get("/ui/").status_code == 200
    other_api = {"Authorization": f"Bearer {mint(config, sub=other)}"}
    assert client.get("/api/jobs/nope", headers=other_api).status_code == 404


def test_tracebacks_are_for_admins_only(client, token, conn, env):
    from tests.api.test_jobs_api import drain

    user, admin = token("tb-user", tenant="tb"), token("ops", admin=True)
    ids = []
    for outcomes in (["401"], ["500", "ok"]):  # dead; retried, then finished
        r = client.post("/api/jobs", headers=user, json={"payload": {"prompt": "p", "simulate": outcomes}})
        ids.append(r.json()["data"]["id"])
    drain(env)
    for job_id in ids:
        seen = client.get(f"/api/jobs/{job_id}", headers=admin).json()["data"]
        assert seen["history"] and "ProviderError" in seen["history"][0]["error"]["traceback"]
        r = client.get(f"/api/jobs/{job_id}", headers=user)
        assert r.status_code == 200 and "traceback" not in r.text.lower() and "site-packages" not in r.text
        history = r.json()["data"]["history"]
        assert history[0]["error"]["type"] == "ProviderError" and history[0]["error"]["message"]  # the rest stays
    r = client.post(f"/api/jobs/{ids[0]}/retry", headers=user)  # dead → queued; its history is in the answer
    assert r.status_code == 200 and r.json()["data"]["history"] and "traceback" not in r.text.lower()
    ui_login(client, conn, "tb-user", tenant="tb")
    page = client.get(f"/ui/jobs?id={ids[1]}")
    assert page.status_code == 200 and ids[1] in page.text and "Traceback" not in page.text


def pem_pair(tmp_path, private_key) -> str:
    from cryptography.hazmat.primitives import serialization

    path = tmp_path / f"key-{uuid.uuid4().hex[:6]}.pem"
    path.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


def signed(private_key, algorithm: str, sub: str = "alice") -> dict:
    import time

    import jwt

    claims = {"sub": sub, "exp": int(time.time()) + 60}
    return {"Authorization": f"Bearer {jwt.encode(claims, private_key, algorithm=algorithm)}"}


def test_ec_keys_pin_the_algorithm_of_their_curve(tmp_path, settings, conn):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from fastapi.testclient import TestClient

    from genqueue.api.app import create_app
    from genqueue.api.config import ApiConfig

    keys = {
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "ES384": ec.generate_private_key(ec.SECP384R1()),
        "ES512": ec.generate_private_key(ec.SECP521R1()),
        "RS256": rsa.generate_private_key(65537, 2048),
    }
    for algorithm, key in keys.items():
        config = ApiConfig.from_env(tmp_path, {"GENQUEUE_API_JWT_PUBLIC_KEY": pem_pair(tmp_path, key)})
        assert config.algorithm == algorithm
        with TestClient(create_app(settings, config, conn), raise_server_exceptions=False) as c:
            assert c.get("/api/jobs/nope", headers=signed(key, algorithm)).status_code == 404  # authenticated
            for other, other_key in keys.items():
                if other != algorithm:  # another key, another algorithm: refused, never a 500
                    error(c.get("/api/jobs/nope", headers=signed(other_key, other)), 401, "UNAUTHORIZED")


def test_a_key_error_while_verifying_is_401_and_counts_as_a_failed_authentication(tmp_path, settings, conn):
    from cryptography.hazmat.primitives.asymmetric import ec
    from fastapi.testclient import TestClient

    from genqueue.api.app import create_app
    from genqueue.api.config import ApiConfig

    p384, p256 = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP256R1())
    pem = open(pem_pair(tmp_path, p384), "rb").read()
    # ES256 pinned for a P-384 key (what the service used to do): PyJWT raises InvalidKeyError for every token
    config = ApiConfig("ES256", pem, None, True, auth_fail_limit="3/minute")
    address = (f"10.0.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}", 4000)
    with TestClient(create_app(settings, config, conn), raise_server_exceptions=False, client=address) as c:
        for _ in range(3):
            error(c.get("/api/jobs/nope", headers=signed(p256, "ES256")), 401, "UNAUTHORIZED")
        error(c.get("/api/jobs/nope", headers=signed(p256, "ES256")), 429, "RATE_LIMITED")


def test_an_unsupported_public_key_is_refused_at_start_up_in_one_line(tmp_path, env):
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from genqueue.api.config import ApiConfig
    from genqueue.errors import InvalidInput
    from tests.api.conftest import free_port
    from tests.helpers import run_cli

    for key, named in (
        (ec.generate_private_key(ec.SECP256K1()), "secp256k1"),
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519"),
    ):
        path = pem_pair(tmp_path, key)
        with pytest.raises(InvalidInput, match=named) as refused:
            ApiConfig.from_env(tmp_path, {"GENQUEUE_API_JWT_PUBLIC_KEY": path})
        assert "\n" not in str(refused.value) and "P-384" in str(refused.value)
        r = run_cli(dict(env, GENQUEUE_API_JWT_PUBLIC_KEY=path), "api", "--port", str(free_port()), timeout=60)
        assert r.code == 2 and r.stderr.count("\n") == 1 and named in r.stderr and "Traceback" not in r.stderr


def test_filtered_dlq_stats_describe_only_the_matching_entries(client, token, store, settings):
    from tests.dlq_helpers import make_entry

    groups = [("RATE_LIMITED", "slow down", 6), ("TRANSIENT", "upstream failed", 3), ("PERMANENT", "not allowed", 4)]
    for kind, message, n in groups:
        for i in range(n):
            store.add(make_entry(f"{settings.queue}-{kind}-{i}", queue=settings.queue, kind=kind, message=message))
    admin = token("ops", admin=True)
    whole = client.get("/api/dlq/stats", headers=admin).json()["data"]
    assert [f["count"] for f in whole["top_fingerprints"]] == [6, 4, 3] and whole["counters"] is not None
    r = client.get("/api/dlq/stats?kind=transient", headers=admin)
    assert r.status_code == 200, r.text
    only = r.json()["data"]
    assert only["total"] == 3 and only["by_kind"] == {"TRANSIENT": 3} and sum(only["hourly_last_24h"]) == 3
    assert [(f["count"], f["sample"]) for f in only["top_fingerprints"]] == [(3, "ProviderError: upstream failed")]
    assert only["counters"] is None  # queue-wide lifetime counts: not a figure of the filter
    none = client.get(f"/api/dlq/stats?user=nobody-{uuid.uuid4().hex[:6]}", headers=admin).json()["data"]
    assert none["total"] == 0 and none["top_fingerprints"] == [] and none["by_kind"] == {}
    assert none["oldest_age_s"] is None and sum(none["hourly_last_24h"]) == 0


@pytest.mark.parametrize("depth", [65, 900, 5000])
def test_a_deeply_nested_payload_patch_on_the_dashboard_is_400_and_replays_nothing(
    client, conn, store, settings, depth
):
    from tests.dlq_helpers import make_entry

    job_id = f"{settings.queue}-patch"
    store.add(make_entry(job_id, queue=settings.queue))
    csrf = ui_login(client, conn, f"ops-{uuid.uuid4().hex[:6]}", admin=True)
    patch = '{"params": ' + '{"a": ' * (depth - 2) + "{}" + "}" * (depth - 2) + "}"  # depth levels
    for confirmed in ("", "1"):  # the before/after preview, and the replay itself
        r = client.post(f"/ui/dlq/{job_id}/retry", data={"csrf": csrf, "payload_patch": patch, "confirmed": confirmed})
        assert r.status_code == 400 and "payload patch: " in r.text and "internal error" not in r.text, r.text[-500:]
    assert store.exists(job_id) and conn.llen(f"rq:queue:{settings.queue}") == 0
