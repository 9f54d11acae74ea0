"""A real Redis Cluster for tests: Debian's redis-server, 3 primaries and a replica each on free
loopback ports, joined by `redis-cli --cluster create`; stopped by PID.

`cluster-node-timeout` is 1 s so that a killed primary's replica takes over within a few
seconds (production keeps Redis' 15 s default or whatever the platform sets)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from rung.ports import free_port


class RedisCluster:
    def __init__(self, binary: str, primaries: int = 3, replicas: int = 1) -> None:
        self.binary = binary
        self.cli = shutil.which("redis-cli") or str(Path(binary).with_name("redis-cli"))
        self.ports = [free_port() for _ in range(primaries * (1 + replicas))]
        self.replicas = replicas
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        # The bus port is its own free port (the default, port + 10000, may not exist); kept
        # across a restart so the other nodes find the node where they knew it.
        self.bus_ports = {port: free_port() for port in self.ports}
        self.workdir = Path(tempfile.mkdtemp(prefix="rung-cluster-"))

    @property
    def url(self) -> str:
        """Two seed nodes, as a user would list them."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])

    def start(self) -> RedisCluster:
        try:
            for port in self.ports:
                self._start_node(port)
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            subprocess.run(
                [self.cli, "--cluster", "create", *nodes, "--cluster-replicas",
                 str(self.replicas), "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
            )  # fmt: skip
            self.wait_ok()
        except BaseException:
            self.stop()  # no node left behind
            raise
        return self

    def _start_node(self, port: int) -> None:
        home = self.workdir / str(port)
        home.mkdir(exist_ok=True)
        command = [self.binary, "--port", str(port), "--bind", "127.0.0.1"]
        command += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        command += ["--cluster-port", str(self.bus_ports[port])]
        command += ["--cluster-node-timeout", "1000", "--save", "", "--appendonly", "no"]
        command += ["--dir", str(home)]
        self.processes[port] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server (cluster node) did not start on port {port}")

    def cli_call(self, port: int, *args: str) -> str:
        done = subprocess.run(
            [self.cli, "-p", str(port), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def alive(self) -> list[int]:
        return [p for p, proc in self.processes.items() if proc.poll() is None]

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every live node says the cluster is ok and every slot has a primary."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            infos = [self.cli_call(p, "cluster", "info") for p in self.alive()]
            if infos and all("cluster_state:ok" in i for i in infos):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def primaries(self) -> list[int]:
        out = self.cli_call(self.alive()[0], "cluster", "nodes")
        ports = []
        for line in out.splitlines():
            fields = line.split()
            if len(fields) > 2 and "master" in fields[2] and "fail" not in fields[2]:
                ports.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        return sorted(p for p in ports if p in self.alive())

    def replicas_in_sync(self, timeout_s: float = 10.0) -> None:
        """Until every primary has its replicas connected (`connected_slaves`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            counts = [
                self.cli_call(p, "info", "replication").count("state=online")
                for p in self.primaries()
            ]
            if counts and all(c >= self.replicas for c in counts):
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster's replicas did not come online")

    def flush(self) -> None:
        for port in self.primaries():
            self.cli_call(port, "flushall")

    def kill(self, port: int) -> None:
        process = self.processes[port]
        process.kill()
        process.wait()

    def restart(self, port: int) -> None:
        """Start a killed node again: it reads its nodes.conf and rejoins (as a replica of
        whichever node took over its slots)."""
        self._start_node(port)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
