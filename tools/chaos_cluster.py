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
         nothing visible to clients;
- partition: (needs --netns) the leader's host loses its network (its link goes down) for
         longer than its lease: another node leads; a client on the cut-off host gets no
         acknowledgement from it; healed, it rejoins as a standby.

With --netns (root), each node runs on a host of its own: a network namespace on a bridge
(10.232.0.0/24), reached by clients and etcd over it. With --lossy, every host also drops 2 %
of the packets it receives (iptables' statistic match) and, where the kernel has netem, delays
each packet by 5-15 ms (`tc netem`); the report says which applied.

At the end, on the final leader's journal: every acknowledged message exactly once with the
id it was acknowledged with, each sender's order kept, no reader gap or duplicate, and every
node's segment files identical.

    tools/chaos_cluster.py                               # the short form the test suite runs
    tools/chaos_cluster.py --faults 50 --only kill       # failover times of 50 kills
    sudo tools/chaos_cluster.py --netns --lossy --faults 8   # on separate hosts, with partitions
    CHATLOG=.build/release/chatlog tools/chaos_cluster.py --faults 20 --seed 7

Exit status 0 when every check holds; the report says what was checked.
"""

import argparse
import contextlib
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
from chaos_replication import ROOM, Reader, Sender, conclude, verify  # noqa: E402
from conftest import free_port  # noqa: E402

NODES = ("a", "b", "c")
LEASE_TTL = 2  # the default


class Etcd:
    """etcd (Debian's etcd-server) with one or three members on free ports of 127.0.0.1."""

    def __init__(self, work: Path, members: int, host: str = "127.0.0.1"):
        self.work = work
        self.host = host
        self.names = [f"e{i}" for i in range(members)]
        self.client = {name: free_port() for name in self.names}
        self.peer = {name: free_port() for name in self.names}
        self.processes = {}

    @property
    def endpoints(self) -> str:
        return ",".join(f"http://{self.host}:{self.client[name]}" for name in self.names)

    def start(self, name: str):
        initial = ",".join(f"{n}=http://127.0.0.1:{self.peer[n]}" for n in self.names)
        url = f"http://{self.host}:{self.client[name]}"
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


def sh(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)


class Network:
    """Three test hosts, one network namespace each, on a bridge in this namespace: this one
    (clients, etcd) is 10.232.0.1, node N of NODES is 10.232.0.1(N+1). Removed on exit."""

    def __init__(self):
        self.tag = f"{os.getpid() % 10000}"
        self.bridge = f"clb{self.tag}"
        self.namespaces = {name: f"cl{self.tag}{name}" for name in NODES}
        self.made_links, self.made_namespaces = [], []
        self.netem = False
        self.lossy = False

    def address(self, name: str) -> str:
        return f"10.232.0.{11 + NODES.index(name)}"

    host_address = "10.232.0.1"

    def __enter__(self):
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made_links.append(self.bridge)
        sh("ip", "addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for name, namespace in self.namespaces.items():
            sh("ip", "netns", "add", namespace)
            self.made_namespaces.append(namespace)
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
            link = f"clv{self.tag}{name}"
            sh("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            self.made_links.append(link)
            sh("ip", "link", "set", link, "master", self.bridge)
            sh("ip", "link", "set", link, "up")
            sh("ip", "-n", namespace, "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
            sh("ip", "-n", namespace, "link", "set", "eth0", "up")
        return self

    def __exit__(self, *exc):
        # Deleting a namespace deletes its veth end, the peer, and its iptables rules and qdiscs.
        for namespace in self.made_namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
        for link in reversed(self.made_links):
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)

    def wrapper(self, name: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[name]]

    def make_lossy(self):
        """2 % of the packets each host receives are dropped; with netem, each is delayed 5-15 ms."""
        for namespace in self.namespaces.values():
            sh("ip", "netns", "exec", namespace, "iptables", "-A", "INPUT", "-i", "eth0", "-m", "statistic",
               "--mode", "random", "--probability", "0.02", "-j", "DROP")
        self.lossy = True
        try:
            for namespace in self.namespaces.values():
                sh("ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "10ms", "5ms")
            self.netem = True
        except subprocess.CalledProcessError:
            self.netem = False  # this kernel has no sch_netem

    def cut(self, name: str):
        sh("ip", "-n", self.namespaces[name], "link", "set", "eth0", "down")

    def heal(self, name: str):
        sh("ip", "-n", self.namespaces[name], "link", "set", "eth0", "up")


class ClusterNodes:
    """The three chatlog nodes on fixed ports; who leads is read from etcd."""

    def __init__(self, chatlog: str, work: Path, etcd: Etcd, network: Network | None):
        self.chatlog = chatlog
        self.work = work
        self.etcd = etcd
        self.network = network
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
        if self.network:
            server = Server(self.chatlog, self.work / name, *args, wrapper=self.network.wrapper(name),
                            address=self.network.address(name))
        else:
            server = Server(self.chatlog, self.work / name, *args)
        server.start(port=self.ports[name])
        with self.lock:
            self.nodes[name] = server
        return server

    def url(self, name: str) -> str:
        host = self.network.address(name) if self.network else "127.0.0.1"
        return f"http://{host}:{self.ports[name]}"

    def other(self, name: str) -> str:
        up = [n for n in self.up() if n != name]
        return random.choice(up) if up else name

    def kill_all(self):
        """Whatever still runs (after a failure), so that nothing outlives the run."""
        for server in self.nodes.values():
            if server.process and server.process.poll() is None:
                server.process.kill()
                server.process.wait(timeout=10)

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


class FailoverProbe(threading.Thread):
    """Started at a kill: sends one new message (a fresh client id, resent with the same id) to
    the surviving nodes in turn until it is acknowledged; `elapsed` is the failover time. It
    looks like a sender to `verify`, which checks its message too."""

    def __init__(self, cluster: ClusterNodes, victim: str, index: int):
        super().__init__(daemon=True)
        self.cluster, self.victim, self.index = cluster, victim, index
        self.started = time.monotonic()
        self.acked = []
        self.elapsed = None

    def run(self):
        clients = {}
        while self.elapsed is None and time.monotonic() - self.started < 30:
            for name in [n for n in NODES if n != self.victim]:
                try:
                    if name not in clients or not clients[name].sio.connected:
                        clients[name] = Client(self.cluster.url(name), "sender0", transports=["websocket"])
                    answer = clients[name].call("send-group-message", {"group": ROOM, "message": f"probe {self.index}",
                                                                       "client_id": f"s{self.index}-0"}, timeout=1)
                except Exception:
                    clients.pop(name, None)
                    continue
                if answer.get("ok"):
                    self.acked.append((0, answer["id"]))
                    self.elapsed = time.monotonic() - self.started
                    break
            time.sleep(0.02)
        for client in clients.values():
            client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=3, help="how many faults, default 3 (one of each kind given)")
    parser.add_argument("--only", choices=["kill", "stop", "etcd", "partition"], action="append",
                        help="the fault kinds to inject (repeatable)")
    parser.add_argument("--netns", action="store_true", help="each node on a host of its own (network namespaces; root)")
    parser.add_argument("--lossy", action="store_true", help="with --netns: 2 %% packet loss, and netem delay where the kernel has it")
    parser.add_argument("--etcd-members", type=int, choices=[1, 3], default=3)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    kinds = args.only or (["kill", "stop"] + (["etcd"] if args.etcd_members == 3 else []) + (["partition"] if args.netns else []))
    if "etcd" in kinds and args.etcd_members != 3:
        raise SystemExit("--only etcd needs --etcd-members 3")
    if ("partition" in kinds or args.lossy) and not args.netns:
        raise SystemExit("partitions and --lossy need --netns")
    if args.netns and os.geteuid() != 0:
        raise SystemExit("--netns needs root (network namespaces)")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    random.seed(rng.random())
    chatlog = os.environ.get("CHATLOG", str(Path(__file__).resolve().parents[1] / ".build" / "debug" / "chatlog"))
    work = Path(tempfile.mkdtemp(prefix="chatlog-cluster-chaos-"))
    print(f"cluster chaos: seed {seed}, {args.faults} faults of {', '.join(kinds)}, etcd of {args.etcd_members}, "
          f"{args.senders} senders, {args.readers} readers, in {work}")
    with contextlib.ExitStack() as resources:
        network = resources.enter_context(Network()) if args.netns else None
        if network and args.lossy:
            network.make_lossy()
            print(f"  every host drops 2 % of the packets it receives; "
                  f"{'netem delays each by 5-15 ms' if network.netem else 'no netem in this kernel: no added delay'}")
        etcd = Etcd(work, args.etcd_members, host=network.host_address if network else "127.0.0.1")
        resources.callback(etcd.stop_all)
        etcd.start_all()
        cluster = ClusterNodes(chatlog, work, etcd, network)
        resources.callback(cluster.kill_all)
        return run_faults(args, kinds, rng, chatlog, work, etcd, cluster, network)


def probe(cluster: ClusterNodes, name: str, client_id: str, network: Network | None) -> object:
    """Sends one message as a member of the room to node `name`, from its own host when the
    nodes are on hosts of their own, and returns the answer (or why there was none)."""
    url = f"http://127.0.0.1:{cluster.ports[name]}" if network else cluster.url(name)
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from chatserver import Client\n"
            "try:\n"
            "    c = Client(sys.argv[2], 'sender0', transports=['polling'])\n"
            "    print(json.dumps(c.call('send-group-message', {'group': sys.argv[3], 'message': 'probe', 'client_id': sys.argv[4]}, timeout=10)))\n"
            "    c.close()\n"
            "except Exception as error:\n"
            "    print(json.dumps({'no_answer': type(error).__name__}))\n")
    command = [sys.executable, "-c", code, str(Path(__file__).resolve().parent / "tests"), url, ROOM, client_id]
    if network:
        command = network.wrapper(name) + command
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"no_answer": result.stderr.strip()[-200:]}


def run_faults(args, kinds, rng, chatlog, work, etcd, cluster, network) -> int:
    stop = threading.Event()
    senders, readers, probes = [], [], []
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
                failover_probe = FailoverProbe(cluster, old, 100 + fault)
                failover_probe.start()
                probes.append(failover_probe)
                victim.process.wait(timeout=10)
                victim.stderr.close()
                new, new_epoch = cluster.wait_for_leader(other_than=old)
                elected = time.monotonic() - killed
                failover_probe.join(timeout=40)
                cluster.start(old)
                failover = failover_probe.elapsed
                if failover is None:
                    problems.append(f"fault {fault + 1}: no new send acknowledged within 30 s of killing {old}")
                    failover = float("inf")
                failovers.append(failover)
                print(f"  fault {fault + 1}: kill -9 of {old} (epoch {epoch}); {new} leads (epoch {new_epoch}) after "
                      f"{elected:.1f} s; a new send acknowledged {failover:.2f} s after the kill; {old} restarted")
            elif kind == "stop":
                victim.process.send_signal(signal.SIGSTOP)
                time.sleep(LEASE_TTL + 2)
                new, new_epoch = cluster.wait_for_leader(other_than=old)
                # A member sends to the paused node; its answer may come only once the node
                # resumes, and must not be an acknowledgement.
                answers = []
                prober = threading.Thread(target=lambda: answers.append(probe(cluster, old, f"paused-{fault}", network)), daemon=True)
                prober.start()
                time.sleep(0.5)
                victim.process.send_signal(signal.SIGCONT)
                prober.join(timeout=60)
                answer = answers[0] if answers else {"no_answer": "none within 60 s"}
                if isinstance(answer, dict) and answer.get("ok"):
                    problems.append(f"fault {fault + 1}: {old} acknowledged a send after resuming from a pause past its lease: {answer}")
                print(f"  fault {fault + 1}: SIGSTOP of {old} (epoch {epoch}) for {LEASE_TTL + 2} s; {new} leads (epoch {new_epoch}); "
                      f"after SIGCONT a send to {old} got {answer.get('error', answer) if isinstance(answer, dict) else answer}")
            elif kind == "partition":
                network.cut(old)
                cut_at = time.monotonic()
                new, new_epoch = cluster.wait_for_leader(other_than=old)
                elected = time.monotonic() - cut_at
                # A member on the cut-off host sends to it: no acknowledgement may come back.
                answer = probe(cluster, old, f"cut-off-{fault}", network)
                if isinstance(answer, dict) and answer.get("ok"):
                    problems.append(f"fault {fault + 1}: {old}, cut off, acknowledged a send: {answer}")
                network.heal(old)
                healed = time.monotonic()
                deadline = healed + 30
                while time.monotonic() < deadline and (cluster.replication(old) or {}).get("cluster", {}).get("role") != "standby":
                    time.sleep(0.1)
                rejoined = (cluster.replication(old) or {}).get("cluster", {}).get("role") == "standby"
                if not rejoined:
                    problems.append(f"fault {fault + 1}: {old} did not follow {new} within 30 s of the partition healing")
                print(f"  fault {fault + 1}: {old} (epoch {epoch}) cut off; {new} leads (epoch {new_epoch}) after {elected:.1f} s; "
                      f"a send to {old} from its own host got {answer.get('error', answer) if isinstance(answer, dict) else answer}; "
                      f"healed, it {'follows ' + new + f' after {time.monotonic() - healed:.1f} s' if rejoined else 'did NOT follow'}")
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
    found, messages, acked_total = verify(chatlog, work / leader, [work / n for n in NODES if n != leader], senders + probes,
                                          readers)
    problems += found
    kills = sorted(f for f in failovers if f != float("inf"))
    print(f"cluster chaos: {acked_total} messages acknowledged, {len(messages)} in the final journal, "
          f"{sum(len(r.ids) for r in readers)} deliveries to {len(readers)} readers ({sum(r.resumes for r in readers)} resumes)")
    if kills:
        print(f"failover (kill -9 of the leader to the first acknowledged new send), {len(kills)} kills: "
              f"median {statistics.median(kills):.2f} s, worst {kills[-1]:.2f} s, best {kills[0]:.2f} s; "
              f"all: {', '.join(f'{f:.2f}' for f in kills)}")
    return conclude("cluster chaos", problems, work, args.keep, "every acknowledged message exactly once, in each sender's "
                    "order; no reader saw a gap or a duplicate; every node's journal identical")


if __name__ == "__main__":
    sys.exit(main())
