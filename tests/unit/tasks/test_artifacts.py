"""The artifact store: atomic local files under GENQUEUE_HOME, file:// and fsspec URLs, safe names."""

from __future__ import annotations

import sys

import pytest

from genqueue.tasks import artifacts


def test_local_artifacts_are_written_atomically_under_genqueue_home(tmp_path, monkeypatch):
    monkeypatch.delenv("GENQUEUE_ARTIFACTS", raising=False)
    monkeypatch.setenv("GENQUEUE_HOME", str(tmp_path))
    uri = artifacts.put("job-1", "0.png", b"one")
    assert uri == (tmp_path / "artifacts" / "job-1" / "0.png").as_uri()
    assert artifacts.put("job-1", "0.png", b"two") == uri  # a retry overwrites
    assert [p.name for p in (tmp_path / "artifacts" / "job-1").iterdir()] == ["0.png"]
    assert (tmp_path / "artifacts" / "job-1" / "0.png").read_bytes() == b"two"
    for job_id, name in [("..", "x"), ("a/b", "x"), ("j", "../x"), ("j", ""), ("j", "a\\b")]:
        with pytest.raises(ValueError, match="plain file name"):
            artifacts.put(job_id, name, b"x")
    with pytest.raises(TypeError):
        artifacts.put("job-1", "0.txt", "text, not bytes")


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
    uri = store.put("job-9", "0.png", b"\x89PNG")
    assert uri.startswith("memory://") and uri.endswith("/gq-test/artifacts/job-9/0.png")
    assert fsspec.open(uri, "rb").open().read() == b"\x89PNG"
