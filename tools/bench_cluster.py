#!/usr/bin/env python3
"""Steady state of a cluster on etcd against the same three nodes without etcd, alternated in one run.

A: `serve --etcd` on three nodes, `--sync-replicas 1` (the in-sync rule: an event commits once
   both other members have it durable).
B: the same three nodes without etcd: a leader with two `--standby-of` standbys and
   `--sync-replicas 2` (also both standbys durable before a commit: the same durability).

Each round runs `chatlog bench load` against the leader (--senders senders, one room each, with
--window sends in flight each, fsync durability: as tools/bench-replication.sh does) once per setup, A and B alternating; the
report gives acked sends/s and p99 send-to-delivery latency per run and the ratio of the means.

    CHATLOG=.build/release/chatlog tools/bench_cluster.py --rounds 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
from chaos_cluster import Etcd  # noqa: E402
from chatserver import Server  # noqa: E402
from conftest import free_port, wait_until  # noqa: E402


def replication(url: str, secret: Path) -> dict:
    import urllib.request
    request = urllib.request.Request(url + "/api/replication", headers={"Authorization": "Bearer " + secret.read_text().strip()})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def start(chatlog: str, work: Path, secret: Path, etcd: Etcd | None, name: str, port: int, leader_url: str | None) -> Server:
    args = ["--replication-secret-file", str(secret), "--log-level", "warning",
            "--events-per-second", "1000000", "--events-burst", "1000000"]
    if etcd:
        args += ["--etcd", etcd.endpoints, "--cluster", work.name, "--node", name, "--advertise-url",
                 f"http://127.0.0.1:{port}", "--sync-replicas", "1"]
    elif leader_url:
        args += ["--standby-of", leader_url, "--standby-name", name]
    else:
        args += ["--sync-replicas", "2"]
    return Server(chatlog, work / name, *args).start(port=port)


def run_setup(chatlog: str, root: Path, secret: Path, etcd: Etcd | None, label: str, bench: list[str]) -> dict:
    work = root / f"{label}-{time.monotonic_ns()}"
    work.mkdir()
    ports = {name: free_port() for name in "abc"}
    nodes = []
    try:
        leader = start(chatlog, work, secret, etcd, "a", ports["a"], None)
        nodes.append(leader)
        if etcd:
            wait_until(lambda: replication(leader.url, secret)["cluster"]["role"] == "leader", what="a leading")
        for name in "bc":
            nodes.append(start(chatlog, work, secret, etcd, name, ports[name], None if etcd else leader.url))
        if etcd:
            wait_until(lambda: replication(leader.url, secret)["cluster"]["in_sync"] == ["a", "b", "c"], what="all in sync")
        else:
            wait_until(lambda: len([s for s in replication(leader.url, secret)["standbys"] if s["connected"]]) == 2,
                       what="both standbys connected")
        result = subprocess.run([chatlog, "bench", "load", "--url", leader.url, "--server-pid", str(leader.process.pid),
                                 "--label", label, *bench], capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise SystemExit(f"bench load failed ({label}): {result.stderr[-2000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        for server in reversed(nodes):
            if server.process.poll() is None:
                server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--senders", type=int, default=100)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--messages", type=int, default=1000, help="per sender")
    args = parser.parse_args()
    chatlog = os.environ.get("CHATLOG", str(Path(__file__).resolve().parents[1] / ".build" / "release" / "chatlog"))
    root = Path(tempfile.mkdtemp(prefix="chatlog-bench-cluster-"))
    secret = root / "replication.secret"
    secret.write_text(os.urandom(24).hex() + "\n")
    bench = ["--rooms", str(args.senders), "--clients-per-room", "1", "--senders", str(args.senders),
             "--messages", str(args.messages), "--window", str(args.window)]
    etcd = Etcd(root, 1)
    etcd.start_all()
    results = {"cluster": [], "no-etcd": []}
    try:
        for round_ in range(args.rounds):
            for label in (("cluster", "no-etcd") if round_ % 2 == 0 else ("no-etcd", "cluster")):
                result = run_setup(chatlog, root, secret, etcd if label == "cluster" else None, label, bench)
                results[label].append(result)
                print(f"round {round_ + 1} {label}: {result['acked_sends_per_s']:.0f} acked sends/s, "
                      f"p99 {result['latency_p99_ms']:.2f} ms, lost {result['lost']}, duplicated {result['duplicated']}")
    finally:
        etcd.stop_all()
    for label, runs in results.items():
        print(f"{label}: acked sends/s mean {statistics.mean(r['acked_sends_per_s'] for r in runs):.0f}, "
              f"p99 mean {statistics.mean(r['latency_p99_ms'] for r in runs):.2f} ms")
    ratio = statistics.mean(r["acked_sends_per_s"] for r in results["cluster"]) / statistics.mean(
        r["acked_sends_per_s"] for r in results["no-etcd"])
    p99 = statistics.mean(r["latency_p99_ms"] for r in results["cluster"]) / statistics.mean(
        r["latency_p99_ms"] for r in results["no-etcd"])
    print(f"cluster / no etcd: acked sends/s x{ratio:.2f}, p99 x{p99:.2f}")
    subprocess.run(["rm", "-rf", str(root)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
