"""A Redis Cluster for tests: redis-server processes in cluster mode on free loopback ports, in
temp dirs, joined by `redis-cli --cluster create`, ended by PID.

`RedisCluster(directory, primaries=3, replicas=1).start()` returns once every node reports
`cluster_state:ok` with all 16384 slots assigned; `primary_of(key)`, `replica_of(node)`,
`failover(node)` and `kill(node)` inject the faults a cluster meets."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.crc import key_slot

from streamjobs._server_binary import redis_binary
from tests._redis import RedisProcess

#: Milliseconds before a silent primary is marked failed and its replica elected.
NODE_TIMEOUT_MS = 1000


def cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher) is free too: at most 55535."""
    for _ in range(200):
        port = random.randint(20_000, 55_000)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node in 200 tries")


class ClusterUnavailable(RuntimeError):
    """This redis-server cannot run a cluster (too old, or cluster support left out)."""


class TlsNode(RedisProcess):
    """A cluster node that speaks TLS only (clients, replication and the cluster bus)."""

    def __init__(self, directory: Path, *args: str, port: int, ca: Path) -> None:
        super().__init__(directory, *args, port=port)
        self.ca = ca

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5, ssl=True,
                           ssl_ca_certs=str(self.ca))  # fmt: skip


class RedisCluster:
    """`primaries` primaries, each with `replicas` replicas, on loopback. With `tls` (a
    server certificate, its key and the CA that signed it), every node speaks TLS only."""

    def __init__(
        self, directory: Path, primaries: int = 3, replicas: int = 0,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:  # fmt: skip
        self.dir = directory
        self.primaries, self.replicas = primaries, replicas
        self.tls = tls
        self.nodes: list[RedisProcess] = []

    @property
    def url(self) -> str:
        """A URL of the first node (any node serves the whole cluster)."""
        return self.nodes[0].url

    def _node(self, port: int) -> RedisProcess:
        args = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--cluster-replica-validity-factor", "0", "--repl-diskless-sync", "yes",
                "--repl-diskless-sync-delay", "0"]  # fmt: skip
        if self.tls is None:
            return RedisProcess(self.dir / str(port), *args, port=port)
        cert, key, ca = self.tls
        args += ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes",
                 "--tls-replication", "yes", "--tls-cert-file", str(cert), "--tls-key-file",
                 str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]  # fmt: skip
        return TlsNode(self.dir / str(port), *args, port=port, ca=ca)

    def start(self, timeout: float = 30.0) -> RedisCluster:
        """Start every node, join them, and wait until the cluster serves every slot."""
        count = self.primaries * (1 + self.replicas)
        for _ in range(count):
            node = self._node(cluster_port())
            self.nodes.append(node)
            try:
                node.start()
            except RuntimeError as exc:
                msg = f"redis-server would not start in cluster mode: {exc}"
                raise ClusterUnavailable(msg) from exc
        cli = redis_binary("redis-cli").path
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        tls = [] if self.tls is None else ["--tls", "--cacert", str(self.tls[2])]
        done = subprocess.run(
            [cli, *tls, "--cluster", "create", *addresses, "--cluster-replicas",
             str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise ClusterUnavailable(f"redis-cli --cluster create failed: {done.stdout[-500:]}")
        self.wait_ok(timeout)
        return self

    def wait_ok(self, timeout: float = 30.0, *, nodes: list[RedisProcess] | None = None) -> None:
        """Wait until each live node says `cluster_state:ok`, with every slot served, and
        the node count settled as expected (bounded by `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        want = nodes if nodes is not None else self.live()
        while True:
            if all(self._ok(node) for node in want):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster was not ok within {timeout:g}s")
            time.sleep(0.1)

    def _ok(self, node: RedisProcess) -> bool:
        try:
            with node.client() as client:
                info = client.cluster("info")
                if info.get("cluster_state") != "ok":
                    return False
                if int(info.get("cluster_slots_ok", 0)) != 16384:
                    return False
                replicas = sum(1 for r in client.cluster("nodes").values() if "slave" in r["flags"])
        except redis.RedisError:
            return False
        return self.replicas == 0 or replicas >= 1

    def live(self) -> list[RedisProcess]:
        """The nodes whose process runs."""
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def role(self, node: RedisProcess) -> str:
        """`master` or `slave`, as the node says."""
        with node.client() as client:
            return str(client.info("replication")["role"])

    def primary_of(self, key: str) -> RedisProcess:
        """The live node that serves `key`'s slot now."""
        slot = key_slot(key.encode())
        for node in self.live():
            with node.client() as client:
                for (start, end), info in _ranges(client):
                    if start <= slot <= end:
                        port = int(info)
                        return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no node serves slot {slot}")

    def other_than(self, node: RedisProcess) -> RedisProcess:
        """A live primary other than `node` (a URL there makes a client meet MOVED)."""
        return next(n for n in self.live() if n is not node and self.role(n) == "master")

    def replica_of(self, primary: RedisProcess) -> RedisProcess:
        """A live replica of `primary`."""
        with primary.client() as client:
            ports = [int(r["port"]) for k, r in client.info("replication").items()
                     if k.startswith("slave") and isinstance(r, dict)]  # fmt: skip
        return next(n for n in self.live() if n.port in ports)

    def failover(self, replica: RedisProcess) -> None:
        """`CLUSTER FAILOVER` on a replica: it takes its primary's slots over, no data lost."""
        with replica.client() as client:
            client.execute_command("CLUSTER", "FAILOVER")

    def node_id(self, node: RedisProcess) -> str:
        with node.client() as client:
            return str(client.execute_command("CLUSTER", "MYID"))  # type: ignore[no-untyped-call]

    def migrate_slot(self, slot: int, source: RedisProcess, target: RedisProcess) -> int:
        """Move one slot and its keys from `source` to `target` as `redis-cli --cluster
        reshard` does (IMPORTING, MIGRATING, MIGRATE in batches, then the new owner told to
        every primary): clients meet ASK and TRYAGAIN meanwhile, MOVED after. Returns how
        many keys moved."""
        source_id, target_id = self.node_id(source), self.node_id(target)
        moved = 0
        with source.client() as src, target.client() as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)  # type: ignore[no-untyped-call]
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)  # type: ignore[no-untyped-call]
            for _ in range(10_000):
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 20)  # type: ignore[no-untyped-call]
                if not keys:
                    break
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)  # type: ignore[no-untyped-call]
                moved += len(keys)
                time.sleep(0.01)  # jobs go on between batches, meeting ASK and TRYAGAIN
            for node in (target, source, *(n for n in self.live() if n not in (source, target))):
                with node.client() as client:
                    if self.role(node) == "master":
                        client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)  # type: ignore[no-untyped-call]
        return moved

    def kill(self, node: RedisProcess) -> None:
        """SIGKILL one node."""
        node.kill()

    def stop(self) -> None:
        """SIGKILL every node this cluster started."""
        for node in self.nodes:
            node.kill()


def _ranges(client: redis.Redis) -> list[tuple[tuple[int, int], int]]:
    """(slot range, port of its primary) from CLUSTER SLOTS."""
    reply = client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
    ranges = []
    for entry in reply:
        start, end, primary = entry[0], entry[1], entry[2]
        ranges.append(((int(start), int(end)), int(primary[1])))
    return ranges
