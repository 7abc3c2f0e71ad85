"""Scenario 7 — the HTTP API: GET /api/jobs/{id} with a bearer token and the Redis rate limit on (a limit
too high to trigger), 16 connections on loopback from a second process, against rq-dashboard's job JSON
endpoint (`rq-dashboard -j`, same server, same job) and a bare endpoint of the same framework and server
that touches no Redis. Load from wrk when it is installed (Debian's package), else a bounded Python client
(asyncio + httpx in its own process; it costs more CPU than wrk, so its figures are lower)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

from .common import Ctx, Scenario

SECRET = "bench-secret-of-at-least-thirty-two-characters"
CONNECTIONS = 16
LOADER = r"""
import asyncio, json, sys, time, httpx
url, headers, seconds, conns = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
lat = []
async def worker(client, stop):
    while time.monotonic() < stop:
        t = time.perf_counter(); r = await client.get(url, headers=headers); lat.append(time.perf_counter() - t)
        assert r.status_code == 200, r.status_code
async def main():
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        stop = time.monotonic() + seconds
        await asyncio.gather(*[worker(client, stop) for _ in range(conns)])
started = time.monotonic(); asyncio.run(main()); took = time.monotonic() - started
lat.sort(); print(json.dumps({"rps": len(lat) / took, "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))]}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, headers: dict | None = None) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {url}")
        try:
            if httpx.get(url, headers=headers or {}, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer: {url}")


@contextmanager
def _serving(args: list[str], env: dict[str, str], probe: str, headers: dict | None = None):
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_http(probe, proc, headers)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def load(url: str, headers: dict[str, str], seconds: float) -> dict[str, float]:
    """Requests per second and p99 latency (ms) at CONNECTIONS connections."""
    wrk = shutil.which("wrk")
    if wrk:
        args = [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{max(1, int(seconds))}s", "--latency", url]
        for name, value in headers.items():
            args[1:1] = ["-H", f"{name}: {value}"]
        out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
        if "Non-2xx" in out:
            raise RuntimeError(f"wrk saw errors:\n{out}")
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
        return {"rps": rps, "p99_ms": float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], "tool": "wrk"}
    out = subprocess.run(
        [sys.executable, "-c", LOADER, url, json.dumps(headers), str(seconds), str(CONNECTIONS)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    return {**json.loads(out), "tool": "python"}


def run(ctx: Ctx) -> Scenario:
    from genqueue.api.auth import mint
    from genqueue.api.config import ApiConfig
    from genqueue.jobs.enqueue import enqueue

    seconds = 2.0 if ctx.smoke else 10.0
    sc = Scenario(
        "api",
        "HTTP: GET /api/jobs/{id} (JWT + rate limit) vs rq-dashboard and a bare endpoint",
        sizes={"seconds": seconds, "connections": CONNECTIONS},
    )
    queue = ctx.name("api")
    job_id = enqueue(ctx.conn, queue, {"prompt": "bench"}, job_id=ctx.name("api-job"), tenant="bench").job.id
    env = {
        **os.environ,
        "REDIS_URL": ctx.url,
        "GENQUEUE_HOME": str(ctx.home),
        "GENQUEUE_QUEUE": queue,
        "GENQUEUE_API_JWT_SECRET": SECRET,
        "GENQUEUE_API_RATE_LIMIT": "100000000/minute",
        "GENQUEUE_LOG_FORMAT": "json",
    }
    token = mint(ApiConfig("HS256", SECRET, SECRET, True), sub="bench", ttl_s=3600)
    auth = {"Authorization": f"Bearer {token}"}
    ports = {name: _free_port() for name in ("api", "bare", "dash")}
    results: dict[str, dict[str, float]] = {}
    ours = f"http://127.0.0.1:{ports['api']}/api/jobs/{job_id}"
    with _serving([sys.executable, "-m", "genqueue", "api", "--port", str(ports["api"])], env, ours, auth):
        results["genqueue"] = load(ours, auth, seconds)
    bare = f"http://127.0.0.1:{ports['bare']}/bare"
    with _serving(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_api:app",
            "--port",
            str(ports["bare"]),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env,
        bare,
    ):
        results["bare"] = load(bare, {}, seconds)
    dash_script = shutil.which("rq-dashboard") or os.path.join(os.path.dirname(sys.executable), "rq-dashboard")
    dash = f"http://127.0.0.1:{ports['dash']}/0/data/job/{job_id}.json"
    if os.path.exists(dash_script):
        with _serving([dash_script, "-u", ctx.url, "-j", "-b", "127.0.0.1", "-p", str(ports["dash"])], env, dash):
            results["rq_dashboard"] = load(dash, {}, seconds)
    else:
        sc.notes.append("rq-dashboard is not installed (pip install -e '.[bench]'): no rq-dashboard baseline")
    ours_r = results["genqueue"]
    sc.metrics = {k: v for k, v in results.items()}
    tool = ours_r["tool"]
    sc.row(f"req/s, {CONNECTIONS} connections ({tool})", "", f"{ours_r['rps']:.0f}")
    if "rq_dashboard" in results:
        ratio = ours_r["rps"] / results["rq_dashboard"]["rps"]
        sc.row(
            "  vs rq-dashboard job JSON",
            f"{results['rq_dashboard']['rps']:.0f} req/s (p99 {results['rq_dashboard']['p99_ms']:.1f} ms)",
            f"{ours_r['rps']:.0f} req/s",
            f"{ratio:.2f}×",
            "≥ 5×",
            sc.goal("api: ≥ 5× rq-dashboard req/s", ratio, 5.0, higher_is_better=True, unit="×"),
        )
    bare_ratio = ours_r["rps"] / results["bare"]["rps"]
    sc.row(
        "  vs bare endpoint (no Redis)",
        f"{results['bare']['rps']:.0f} req/s",
        f"{ours_r['rps']:.0f} req/s",
        f"{bare_ratio:.2f}×",
        "≥ 0.5×",
        sc.goal("api: ≥ 0.5× the bare endpoint", bare_ratio, 0.5, higher_is_better=True, unit="×"),
    )
    sc.row(
        "  p99 latency",
        f"{results['bare']['p99_ms']:.1f} ms (bare)",
        f"{ours_r['p99_ms']:.1f} ms",
        "",
        "≤ 20 ms",
        sc.goal("api: p99 ≤ 20 ms", ours_r["p99_ms"], 20.0, higher_is_better=False, unit="ms"),
    )
    return sc
