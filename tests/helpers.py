"""Polling with a deadline (never fixed sleeps), CLI runs in real subprocesses, worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_DEADLINE_S = 30.0
# Deadlines only say when to give up on something that should happen: a test never passes by waiting less.
# Every one is stretched by this factor (GENQUEUE_TEST_DEADLINE_SCALE, default 3), so a machine several times
# slower than the one a test was written on (CI beside other work, a CPU hog on each core) still passes, and
# a hang is still caught (pytest-timeout, 300 s a test, dumps the stacks).
DEADLINE_SCALE = float(os.environ.get("GENQUEUE_TEST_DEADLINE_SCALE", "3"))


def race(*actions: Callable[[], Any], expected: tuple[type[Exception], ...]) -> list[str]:
    """Run the actions at once (threads released by one barrier); the sorted outcomes: "ok" for each that
    returned, the exception's class name for each that raised one of `expected` (others propagate)."""
    import threading

    barrier = threading.Barrier(len(actions))
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def run(action: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            action()
            outcomes.append("ok")
        except expected as exc:
            outcomes.append(type(exc).__name__)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sorted(outcomes)


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = DEFAULT_DEADLINE_S,
    interval: float = 0.05,
    message: str = "condition",
) -> Any:
    timeout *= DEADLINE_SCALE
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {message}")
        time.sleep(interval)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(env: dict[str, str], *args: str, input: str | None = None, timeout: float = 60) -> CliResult:
    proc = subprocess.run(
        [sys.executable, "-m", "genqueue", *args], env=env, capture_output=True, text=True, input=input, timeout=timeout
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


class WorkerProcess:
    """A real `genqueue worker` process."""

    def __init__(self, env: dict[str, str], queue: str, *, simple: bool = False, extra: tuple[str, ...] = ()):
        args = [sys.executable, "-m", "genqueue", "worker", "--queue", queue, *extra]
        if simple:
            args.append("--simple")
        self.log_path = os.path.join(env["GENQUEUE_TEST_LOGDIR"], f"worker-{queue}-{time.monotonic_ns()}.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (non-zombie) process (Linux /proc)."""
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parent_of[int(entry)] = int(fields[1])
    return parent_of


def children_of(pid: int) -> list[int]:
    return [child for child, parent in _parents().items() if parent == pid]


def descendants(root_pid: int) -> list[int]:
    """Every live process below root_pid."""
    parent_of = _parents()
    found, frontier = [], [root_pid]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parent_of.items() if ppid == parent]
        found.extend(kids)
        frontier.extend(kids)
    return found
