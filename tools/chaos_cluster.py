#!/usr/bin/env python3
"""Chaos test of a cluster on etcd: automatic failover with real processes, a real etcd and real Socket.IO clients.

Three `chatlog serve --etcd` nodes (`--sync-replicas 1`) and etcd (three members with
`--etcd-members 3`). Senders send with acks and client ids to any node (a standby forwards to
the leader), resending with the same client id when a send fails; readers follow the room on
any node and resume with `after` when their connection drops. Nobody runs `chatlog promote`:
the nodes elect their leader through etcd. Each fault, in turn:

- kill:  `kill -9` of the leader; another node leads by itself; the killed node is restarted
         and rejoins as a standby (the time from the kill to the first acknowledged send
         afterwards is the failover time);
- stop:  SIGSTOP of the leader for longer than its lease, then SIGCONT: it must acknowledge
         nothing after resuming, and follow the new leader;
- etcd:  `kill -9` of one etcd member of three, restarted afterwards (needs --etcd-members 3):
         nothing visible to clients.

At the end, on the final leader's journal: every acknowledged message exactly once with the
id it was acknowledged with, each sender's order kept, no reader gap or duplicate, and every
node's segment files identical.

    tools/chaos_cluster.py                               # the short form the test suite runs
    tools/chaos_cluster.py --faults 50 --only kill       # failover times of 50 kills
    CHATLOG=.build/release/chatlog tools/chaos_cluster.py --faults 20 --seed 7

Exit status 0 when every check holds; the report says what was checked.
"""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
from chatserver import Client, Server  # noqa: E402
from chaos_replication import ROOM, Reader, Sender, verify  # noqa: E402
from conftest import free_port  # noqa: E402

NODES = ("a", "b", "c")
LEASE_TTL = 2  # the default


class Etcd:
    """etcd (Debian's etcd-server) with one or three members on free ports of 127.0.0.1."""

    def __init__(self, work: Path, members: int):
        self.work = work
        self.names = [f"e{i}" for i in range(members)]
        self.client = {name: free_port() for name in self.names}
        self.peer = {name: free_port() for name in self.names}
        self.processes = {}

    @property
    def endpoints(self) -> str:
        return ",".join(f"http://127.0.0.1:{self.client[name]}" for name in self.names)

    def start(self, name: str):
        initial = ",".join(f"{n}=http://127.0.0.1:{self.peer[n]}" for n in self.names)
        url = f"http://127.0.0.1:{self.client[name]}"
        self.processes[name] = subprocess.Popen(
            ["etcd", "--name", name, "--data-dir", str(self.work / f"etcd-{name}"),
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", f"http://127.0.0.1:{self.peer[name]}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer[name]}",
             "--initial-cluster", initial, "--initial-cluster-state", "new", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start_all(self):
        for name in self.names:
            self.start(name)
        deadline = time.monotonic() + 30
        while not self.healthy():
            if time.monotonic() > deadline:
                raise SystemExit("etcd did not start")
            time.sleep(0.2)

    def healthy(self) -> bool:
        result = subprocess.run(["etcdctl", "--endpoints", self.endpoints, "endpoint", "health"], capture_output=True,
                                text=True, timeout=20, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
        return result.returncode == 0

    def kill(self, name: str):
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def stop_all(self):
        for name in list(self.processes):
            self.kill(name)


class ClusterNodes:
    """The three chatlog nodes on fixed ports; who leads is read from etcd."""

    def __init__(self, chatlog: str, work: Path, etcd: Etcd):
        self.chatlog = chatlog
        self.work = work
        self.etcd = etcd
        self.secret = work / "replication.secret"
        self.secret.write_text(os.urandom(24).hex() + "\n")
        # Reentrant: a sender holds it while it asks `other()`, which takes it again.
        self.lock = threading.RLock()
        self.ports = {name: free_port() for name in NODES}
        self.nodes = {}
        # Read by the senders (see chaos_replication.Sender); set by the main thread only.
        self.leader_name = "a"

    def start(self, name: str):
        args = ["--replication-secret-file", str(self.secret), "--sync-replicas", "1", "--sync-timeout", "2s",
                "--etcd", self.etcd.endpoints, "--cluster", "chaos", "--node", name,
                "--advertise-url", self.url(name), "--lease-ttl", f"{LEASE_TTL}s",
                "--events-per-second", "100000", "--events-burst", "100000", "--log-level", "notice"]
        server = Server(self.chatlog, self.work / name, *args)
        server.start(port=self.ports[name])
        with self.lock:
            self.nodes[name] = server
        return server

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def other(self, name: str) -> str:
        up = [n for n in self.up() if n != name]
        return random.choice(up) if up else name

    def up(self) -> list[str]:
        with self.lock:
            return [name for name, s in self.nodes.items() if s.process and s.process.poll() is None]

    def status(self) -> dict | None:
        result = subprocess.run([self.chatlog, "cluster", "status", "--etcd", self.etcd.endpoints, "--cluster", "chaos",
                                 "--format", "json"], capture_output=True, text=True, timeout=30)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def leader(self) -> tuple[str, int] | None:
        status = self.status()
        if status and status.get("leader"):
            return status["leader"]["node"], status["leader"]["epoch"]
        return None

    def wait_for_leader(self, other_than: str | None = None, timeout: float = 30) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.leader()
            if found and found[0] != other_than:
                with self.lock:
                    self.leader_name = found[0]
                return found
            time.sleep(0.05)
        raise SystemExit(f"no leader other than {other_than} within {timeout} s")

    def replication(self, name: str) -> dict | None:
        headers = {"Authorization": "Bearer " + self.secret.read_text().strip()}
        try:
            request = urllib.request.Request(self.url(name) + "/api/replication", headers=headers)
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.load(response)
        except Exception:
            return None

    def all_caught_up(self, leader: str) -> bool:
        ours = self.replication(leader)
        if not ours:
            return False
        for name in NODES:
            if name == leader:
                continue
            theirs = self.replication(name)
            if not theirs or theirs["committed_offset"] != ours["committed_offset"] or theirs.get("leader", {}).get("state") != "following":
                return False
        return True


def first_ack_after(senders: list[Sender], moment: float) -> float | None:
    """Seconds from `moment` to the first acknowledgement of a message first sent after it (a
    resend of one sent before may be answered at once: it had committed)."""
    later = [acked for sender in senders for begun, acked, _ in sender.ack_times if begun > moment]
    return min(later) - moment if later else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=3, help="how many faults, default 3 (one of each kind given)")
    parser.add_argument("--only", choices=["kill", "stop", "etcd"], action="append", help="the fault kinds to inject (repeatable)")
    parser.add_argument("--etcd-members", type=int, choices=[1, 3], default=3)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    kinds = args.only or (["kill", "stop", "etcd"] if args.etcd_members == 3 else ["kill", "stop"])
    if "etcd" in kinds and args.etcd_members != 3:
        raise SystemExit("--only etcd needs --etcd-members 3")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    random.seed(rng.random())
    chatlog = os.environ.get("CHATLOG", str(Path(__file__).resolve().parents[1] / ".build" / "debug" / "chatlog"))
    work = Path(tempfile.mkdtemp(prefix="chatlog-cluster-chaos-"))
    print(f"cluster chaos: seed {seed}, {args.faults} faults of {', '.join(kinds)}, etcd of {args.etcd_members}, "
          f"{args.senders} senders, {args.readers} readers, in {work}")
    etcd = Etcd(work, args.etcd_members)
    etcd.start_all()
    cluster = ClusterNodes(chatlog, work, etcd)
    stop = threading.Event()
    senders, readers = [], []
    failovers, problems = [], []
    try:
        cluster.start("a")
        cluster.wait_for_leader()
        for name in NODES[1:]:
            cluster.start(name)
        # Everyone joins on the leader first (joining appends a membership).
        for name in [f"sender{i}" for i in range(args.senders)] + [f"reader{i}" for i in range(args.readers)]:
            client = Client(cluster.url(cluster.leader_name), name, transports=["websocket"])
            assert client.call("join-group", {"group": ROOM}, timeout=10)["ok"]
            client.close()
        senders = [Sender(cluster, i, stop, random.Random(rng.random())) for i in range(args.senders)]
        readers = [Reader(cluster, i, stop, random.Random(rng.random())) for i in range(args.readers)]
        for thread in senders + readers:
            thread.start()
        for fault in range(args.faults):
            time.sleep(rng.uniform(1.0, 2.5))
            kind = kinds[fault % len(kinds)]
            old, epoch = cluster.wait_for_leader()
            victim = cluster.nodes[old]
            if kind == "kill":
                victim.process.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                victim.process.wait(timeout=10)
                victim.stderr.close()
                new, new_epoch = cluster.wait_for_leader(other_than=old)
                elected = time.monotonic() - killed
                cluster.start(old)
                deadline = time.monotonic() + 30
                while first_ack_after(senders, killed) is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                failover = first_ack_after(senders, killed)
                if failover is None:
                    problems.append(f"fault {fault + 1}: no send acknowledged within 30 s of killing {old}")
                    failover = float("inf")
                failovers.append(failover)
                print(f"  fault {fault + 1}: kill -9 of {old} (epoch {epoch}); {new} leads (epoch {new_epoch}) after "
                      f"{elected:.1f} s; first acknowledged send {failover:.2f} s after the kill; {old} restarted")
            elif kind == "stop":
                victim.process.send_signal(signal.SIGSTOP)
                time.sleep(LEASE_TTL + 2)
                new, new_epoch = cluster.wait_for_leader(other_than=old)
                # A client of the paused node sends; its answer may come only once the node
                # resumes, and must not be an acknowledgement.
                paused_client = threading.Thread(daemon=True)
                answers = []

                def send_to_paused():
                    try:
                        client = Client(cluster.url(old), "paused-probe", transports=["polling"])
                    except Exception as error:
                        answers.append(f"no connection: {error}")
                        return
                    try:
                        answers.append(client.call("send-group-message", {"group": ROOM, "message": "to a paused leader",
                                                                          "client_id": f"paused-{fault}"}, timeout=15))
                    except Exception as error:
                        answers.append(f"no answer: {type(error).__name__}")
                    finally:
                        client.close()

                paused_client = threading.Thread(target=send_to_paused, daemon=True)
                paused_client.start()
                time.sleep(0.5)
                victim.process.send_signal(signal.SIGCONT)
                paused_client.join(timeout=30)
                answer = answers[0] if answers else "none"
                if isinstance(answer, dict) and answer.get("ok"):
                    problems.append(f"fault {fault + 1}: {old} acknowledged a send after resuming from a pause past its lease: {answer}")
                print(f"  fault {fault + 1}: SIGSTOP of {old} (epoch {epoch}) for {LEASE_TTL + 2} s; {new} leads (epoch {new_epoch}); "
                      f"after SIGCONT a send to {old} got {answer if not isinstance(answer, dict) else answer.get('error', answer)}")
            else:
                member = rng.choice(etcd.names)
                before = sum(len(s.acked) for s in senders)
                etcd.kill(member)
                time.sleep(LEASE_TTL * 2)
                during = sum(len(s.acked) for s in senders) - before
                still = cluster.leader()
                if not still or still[0] != old:
                    problems.append(f"fault {fault + 1}: leadership moved from {old} when etcd member {member} died: {still}")
                if during == 0:
                    problems.append(f"fault {fault + 1}: no send acknowledged while etcd member {member} was down")
                etcd.start(member)
                print(f"  fault {fault + 1}: kill -9 of etcd member {member}; {old} kept leading, {during} sends "
                      f"acknowledged meanwhile; member restarted")
        time.sleep(rng.uniform(0.5, 1.5))
    finally:
        stop.set()
        for thread in senders + readers:
            thread.join(timeout=30)
    leader, _ = cluster.wait_for_leader()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not cluster.all_caught_up(leader):
        time.sleep(0.2)
    for name in [n for n in NODES if n != leader] + [leader]:
        server = cluster.nodes[name]
        if server.process.poll() is None:
            server.stop()
    etcd.stop_all()
    found, messages, acked_total = verify(chatlog, work / leader, [work / n for n in NODES if n != leader], senders, readers)
    problems += found
    kills = sorted(f for f in failovers if f != float("inf"))
    print(f"cluster chaos: {acked_total} messages acknowledged, {len(messages)} in the final journal, "
          f"{sum(len(r.ids) for r in readers)} deliveries to {len(readers)} readers ({sum(r.resumes for r in readers)} resumes)")
    if kills:
        print(f"failover (kill -9 of the leader to the first acknowledged send), {len(kills)} kills: "
              f"median {statistics.median(kills):.2f} s, worst {kills[-1]:.2f} s, best {kills[0]:.2f} s; "
              f"all: {', '.join(f'{f:.2f}' for f in kills)}")
    if problems:
        print("cluster chaos: FAILED")
        for problem in problems[:20]:
            print("  " + problem)
        print(f"  work directory kept: {work}")
        return 1
    print("cluster chaos: every acknowledged message exactly once, in each sender's order; no reader saw a gap or a "
          "duplicate; every node's journal identical")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
