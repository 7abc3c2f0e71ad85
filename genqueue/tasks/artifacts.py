"""Where large task outputs go (generated images), so job results stay small JSON that points at them.

`put(job_id, name, data) -> uri` writes one artifact and returns its URI; any task may call it. The store
is `GENQUEUE_ARTIFACTS` when set — a directory, a `file://` URL, or any fsspec URL (`s3://bucket/prefix`,
`gs://…`; fsspec and the filesystem's package are needed then, `pip install 'genqueue[artifacts]'`) —
else the directory `$GENQUEUE_HOME/artifacts`. An artifact belongs to one execution of one tenant's job: it
lives at `<store>/<tenant>/<job_id>/<incarnation>/<name>`, the incarnation being when that job was created
(`TaskContext.incarnation`). A retry of the job overwrites what an earlier attempt wrote instead of adding to
it; a job id reused later (by its tenant, or by another once the first job is gone) is another incarnation,
so it never overwrites or serves an earlier job's artifacts. Outside a task the incarnation is a fresh
random id: such a write never overwrites anything.

Local files are written atomically (a temporary file in the same directory, fsynced, then renamed), so a
reader never sees half an image, even if the work horse is killed mid-write. Object stores' PUTs are
atomic by themselves.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit
from uuid import uuid4

NO_TENANT = "-"  # a job enqueued with no tenant (a local producer, an admin)


class ArtifactStore(Protocol):
    def put(self, where: tuple[str, ...], name: str, data: bytes) -> str: ...


def location(job_id: str) -> tuple[str, ...]:
    """(tenant, job id, incarnation): the directories one execution's artifacts go in (module docstring)."""
    from .context import current

    ctx = current()
    if ctx is not None and ctx.job_id == job_id and ctx.incarnation:
        tenant, incarnation = ctx.tenant or NO_TENANT, ctx.incarnation
    else:
        tenant, incarnation = NO_TENANT, uuid4().hex
    return (quote(tenant, safe="").replace(".", "%2E"), check_component(job_id, "job id"), incarnation)


def check_component(value: str, what: str) -> str:
    """`value` as one path component, or ValueError: no separators, no `..`, nothing empty."""
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "\\" in value or "\x00" in value:
        raise ValueError(f"artifact {what} must be a plain file name, not {value!r}")
    return value


class LocalStore:
    """A directory on this machine."""

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser()

    def path_of(self, where: tuple[str, ...], name: str) -> Path:
        return self.root.joinpath(
            *(check_component(part, "directory") for part in where), check_component(name, "name")
        )

    def put(self, where: tuple[str, ...], name: str, data: bytes) -> str:
        target = self.path_of(where, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return target.resolve().as_uri()


class FsspecStore:
    """Any fsspec filesystem (s3, gs, az, memory, …); fsspec is imported only when one is configured."""

    def __init__(self, url: str):
        try:
            import fsspec
        except ImportError:
            raise ImportError(
                f"GENQUEUE_ARTIFACTS={_scheme(url)}://… needs fsspec: "
                "pip install 'genqueue[artifacts]' (and the filesystem's package, e.g. s3fs)"
            ) from None
        self.url = url.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.url)

    def put(self, where: tuple[str, ...], name: str, data: bytes) -> str:
        parts = [check_component(part, "directory") for part in where] + [check_component(name, "name")]
        path = "/".join([self.base.rstrip("/"), *parts])
        self.fs.pipe_file(path, data)
        return self.fs.unstrip_protocol(path)


def store_for(artifacts: str | None, home: Path) -> ArtifactStore:
    """The store a GENQUEUE_ARTIFACTS value names (None or empty: `<home>/artifacts`)."""
    if not artifacts:
        return LocalStore(home / "artifacts")
    scheme = _scheme(artifacts)
    if scheme == "file":
        parts = urlsplit(artifacts)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"GENQUEUE_ARTIFACTS: a file:// URL names a local path, not host {parts.netloc!r}")
        return LocalStore(unquote(parts.path))
    if scheme:
        return FsspecStore(artifacts)
    return LocalStore(artifacts)


def _scheme(url: str) -> str:
    """The URL's protocol ("" for a plain path); a chained fsspec URL (simplecache::s3://…) keeps its chain."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep or "::" in url else ""


@lru_cache(maxsize=8)
def _cached_store(artifacts: str | None, home: str) -> ArtifactStore:
    return store_for(artifacts, Path(home))


def default_store(env: Mapping[str, str] | None = None) -> ArtifactStore:
    """The store this process's environment configures (GENQUEUE_ARTIFACTS, else under GENQUEUE_HOME)."""
    from ..settings import Settings

    env = os.environ if env is None else env
    return _cached_store(env.get("GENQUEUE_ARTIFACTS") or None, str(Settings.from_env(dict(env)).home))


def put(job_id: str, name: str, data: bytes) -> str:
    """Write one artifact of a job to the configured store; its URI (file:///…, s3://…), under the running
    execution's tenant and incarnation (location)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"artifact data must be bytes, not {type(data).__name__}")
    return default_store().put(location(job_id), name, bytes(data))
