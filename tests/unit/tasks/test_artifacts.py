"""The artifact store: atomic local files under GENQUEUE_HOME, file:// and fsspec URLs, safe names."""

from __future__ import annotations

import sys

import pytest

from genqueue.tasks import artifacts


def in_task(job_id: str, tenant: str | None, incarnation: str):
    from genqueue.tasks.context import TaskContext, set_current

    return set_current(TaskContext(job_id, "t", "q", 1, 0, tenant, None, incarnation))


def test_local_artifacts_are_written_atomically_under_genqueue_home(tmp_path, monkeypatch):
    from genqueue.tasks.context import reset

    monkeypatch.delenv("GENQUEUE_ARTIFACTS", raising=False)
    monkeypatch.setenv("GENQUEUE_HOME", str(tmp_path))
    token = in_task("job-1", "alice", "20260101T000000000000Z")
    try:
        uri = artifacts.put("job-1", "0.png", b"one")
        folder = tmp_path / "artifacts" / "alice" / "job-1" / "20260101T000000000000Z"
        assert uri == (folder / "0.png").as_uri()
        assert artifacts.put("job-1", "0.png", b"two") == uri  # a retry overwrites
    finally:
        reset(token)
    assert [p.name for p in folder.iterdir()] == ["0.png"] and (folder / "0.png").read_bytes() == b"two"
    for job_id, name in [("..", "x"), ("a/b", "x"), ("j", "../x"), ("j", ""), ("j", "a\\b")]:
        with pytest.raises(ValueError, match="plain file name"):
            artifacts.put(job_id, name, b"x")
    with pytest.raises(TypeError):
        artifacts.put("job-1", "0.txt", "text, not bytes")


def test_a_reused_job_id_never_overwrites_or_serves_another_executions_artifacts(tmp_path, monkeypatch):
    from genqueue.tasks.context import reset

    monkeypatch.delenv("GENQUEUE_ARTIFACTS", raising=False)
    monkeypatch.setenv("GENQUEUE_HOME", str(tmp_path))
    uris = {}
    for tenant, incarnation, data in (
        ("alice", "20260101T000000000001Z", b"hers"),
        ("bob", "20260102T000000000001Z", b"his"),
    ):
        token = in_task("art-1", tenant, incarnation)
        try:
            uris[tenant] = artifacts.put("art-1", "out.txt", data)
        finally:
            reset(token)
    assert uris["alice"] != uris["bob"] and "/alice/" in uris["alice"] and "/bob/" in uris["bob"]
    assert (tmp_path / "artifacts" / "alice" / "art-1" / "20260101T000000000001Z" / "out.txt").read_bytes() == b"hers"
    outside = {artifacts.put("art-1", "out.txt", b"x") for _ in range(2)}  # no task: a fresh place each time
    assert len(outside) == 2 and not outside & set(uris.values())
    token = in_task("t-1", "..", "i")
    try:
        artifacts.put("t-1", "a", b"x")
        assert (tmp_path / "artifacts" / "%2E%2E" / "t-1" / "i" / "a").exists()  # a tenant is one directory
    finally:
        reset(token)


def test_artifact_store_choice(tmp_path, monkeypatch):
    assert artifacts.store_for(None, tmp_path).root == tmp_path / "artifacts"
    assert artifacts.store_for(f"file://{tmp_path}/out", tmp_path).root == tmp_path / "out"
    assert artifacts.store_for(str(tmp_path / "plain"), tmp_path).root == tmp_path / "plain"
    with pytest.raises(ValueError, match="host"):
        artifacts.store_for("file://elsewhere/x", tmp_path)
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ImportError, match=r"genqueue\[artifacts\]"):
        artifacts.store_for("s3://bucket/prefix", tmp_path)


def test_fsspec_artifacts(tmp_path):
    import fsspec  # a test dependency (pyproject's test extra)

    store = artifacts.store_for("memory://gq-test/artifacts/", tmp_path)
    uri = store.put(("t", "job-9", "i1"), "0.png", b"\x89PNG")
    assert uri.startswith("memory://") and uri.endswith("/gq-test/artifacts/t/job-9/i1/0.png")
    assert fsspec.open(uri, "rb").open().read() == b"\x89PNG"
