#!/usr/bin/env python3
"""Chaos test of replication and failover, with real processes and real Socket.IO clients.

A leader and a standby (`--sync-replicas 1`); senders send with acks and client ids, half to the
leader and half to the standby (which forwards to the leader), retrying with the same client id
when a send fails; readers follow the room on
either node and, when their connection drops, reconnect (to a node that is up) with `after`.
Each round kills the leader with `kill -9` at a random moment, promotes the standby
(`chatlog promote --server`), and restarts the killed node as a standby of the new leader (it cuts
what the new leader never had). At the end, on the final leader's journal:

- every acknowledged message is there exactly once, with the id it was acknowledged with;
- each sender's messages are in the order it sent them;
- every reader saw the room's messages without a gap or a duplicate over the span it followed.

    tools/chaos_replication.py                  # the short form the test suite runs (2 kills)
    tools/chaos_replication.py --kills 10       # a longer run
    CHATLOG=.build/release/chatlog tools/chaos_replication.py --kills 20 --seed 7

Exit status 0 when every check holds; the report says what was checked.
"""

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
from chatserver import Client, Server  # noqa: E402

ROOM = "chaos"


class Cluster:
    """Two nodes on fixed ports; which one leads changes at each failover."""

    def __init__(self, chatlog: str, work: Path):
        self.chatlog = chatlog
        self.work = work
        self.secret = work / "replication.secret"
        self.secret.write_text(os.urandom(24).hex() + "\n")
        self.lock = threading.Lock()
        self.nodes = {}  # name -> Server
        self.ports = {}
        self.leader_name = "a"

    def start(self, name: str, standby_of: str | None):
        args = ["--replication-secret-file", str(self.secret), "--sync-replicas", "1", "--sync-timeout", "2s",
                "--events-per-second", "100000", "--events-burst", "100000", "--log-level", "notice"]
        if standby_of:
            args += ["--standby-of", standby_of, "--standby-name", name]
        server = Server(self.chatlog, self.work / name, *args)
        server.start(port=self.ports.get(name, 0))
        self.ports[name] = server.port
        with self.lock:
            self.nodes[name] = server
        return server

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def leader_url(self) -> str:
        with self.lock:
            return self.url(self.leader_name)

    def other(self, name: str) -> str:
        return "b" if name == "a" else "a"

    def up(self) -> list[str]:
        with self.lock:
            return [name for name, s in self.nodes.items() if s.process and s.process.poll() is None]


class Sender(threading.Thread):
    """Sends numbered messages with a client id, each until acknowledged. Even senders send to
    the leader; odd ones to the standby, which forwards to the leader."""

    def __init__(self, cluster: Cluster, index: int, stop: threading.Event, rng: random.Random):
        super().__init__(daemon=True)
        self.cluster, self.index, self.stop, self.rng = cluster, index, stop, rng
        self.acked = []  # (n, id)
        self.client = None
        self.errors = 0

    def connect(self):
        if self.client:
            self.client.close()
        self.client = None
        with self.cluster.lock:
            name = self.cluster.leader_name if self.index % 2 == 0 else self.cluster.other(self.cluster.leader_name)
        self.client = Client(self.cluster.url(name), f"sender{self.index}", transports=["websocket"])

    def run(self):
        n = 0
        while not self.stop.is_set():
            client_id = f"s{self.index}-{n}"
            try:
                if self.client is None or not self.client.sio.connected:
                    self.connect()
                answer = self.client.call("send-group-message",
                                          {"group": ROOM, "message": f"{self.index}:{n}", "created": n, "client_id": client_id},
                                          timeout=5)
            except Exception:
                self.errors += 1
                self.client = None
                time.sleep(0.1)
                continue
            if answer.get("ok"):
                self.acked.append((n, answer["id"]))
                n += 1
            else:
                self.errors += 1
                time.sleep(0.05)  # unavailable or not_leader: the leader changes; resend the same id
                if answer.get("error", {}).get("code") in ("not_leader", "unavailable"):
                    self.client.close()
                    self.client = None
            time.sleep(self.rng.uniform(0, 0.01))
        if self.client:
            self.client.close()


class Reader(threading.Thread):
    """Follows the room on some node; on a drop, resumes on a node that is up with `after`."""

    def __init__(self, cluster: Cluster, index: int, stop: threading.Event, rng: random.Random):
        super().__init__(daemon=True)
        self.cluster, self.index, self.stop, self.rng = cluster, index, stop, rng
        self.ids = []
        self.resumes = 0
        self.resume_points = []  # (node, after) of each resume

    def run(self):
        client, consumed = None, 0
        while True:
            if client is not None:
                got = client.received("send-group-message")
                self.ids += [m["id"] for m in got[consumed:]]
                consumed = len(got)
            if self.stop.is_set():
                break
            try:
                if client is None or not client.sio.connected:
                    if client:
                        client.close()
                    client, consumed = None, 0
                    nodes = self.cluster.up()
                    if not nodes:
                        time.sleep(0.1)
                        continue
                    node = self.rng.choice(nodes)
                    candidate = Client(self.cluster.url(node), f"reader{self.index}", transports=["websocket"])
                    payload = {"group": ROOM}
                    if self.ids:
                        payload["after"] = self.ids[-1]
                        self.resumes += 1
                        self.resume_points.append((node, self.ids[-1]))
                    if candidate.call("join-group", payload, timeout=10).get("ok"):
                        client = candidate
                    else:
                        candidate.close()
                        time.sleep(0.1)
                        continue
                time.sleep(0.02)
            except Exception:
                if client:
                    client.close()
                client, consumed = None, 0
                time.sleep(0.1)
        if client:
            client.close()


def caught_up(standby_url: str, leader_url: str, secret: Path) -> bool:
    headers = {"Authorization": "Bearer " + secret.read_text().strip()}
    try:
        with urllib.request.urlopen(urllib.request.Request(standby_url + "/api/replication", headers=headers), timeout=5) as response:
            ours = json.load(response)
        with urllib.request.urlopen(urllib.request.Request(leader_url + "/api/replication", headers=headers), timeout=5) as response:
            theirs = json.load(response)
    except Exception:
        return False
    return ours["committed_offset"] == theirs["committed_offset"] and ours.get("leader", {}).get("state") == "following"


def segment_files(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if p.suffix in (".log", ".index")}


def journal_messages(chatlog: str, directory: Path) -> list[dict]:
    out = subprocess.run([chatlog, "journal", "export", "--journal", str(directory)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"export failed: {out.stderr}")
    messages = []
    for line in out.stdout.splitlines():
        event = json.loads(line)
        if event.get("type") == "message_sent" and event.get("room") == ROOM:
            messages.append(event)
    return messages


def verify(chatlog: str, leader_dir: Path, standbys: list[Path], senders: list["Sender"], readers: list["Reader"]):
    """The checks on the final journals: returns (problems, the room's messages, how many were acknowledged).

    Every acknowledged message is in the leader's journal exactly once with its acknowledged id,
    each sender's ids increase, every reader's ids are a gapless, duplicate-free run of the room's,
    and each standby's segment files are the leader's byte for byte."""
    messages = journal_messages(chatlog, leader_dir)
    problems = []
    for standby in standbys:
        if segment_files(leader_dir) != segment_files(standby):
            problems.append(f"{standby.name}'s segment files differ from the leader's")
    by_client_id = {}
    for message in messages:
        by_client_id.setdefault(message["client_message_id"], []).append(message["offset"])
    acked_total = 0
    for sender in senders:
        previous = -1
        for n, ident in sender.acked:
            acked_total += 1
            offsets = by_client_id.get(f"s{sender.index}-{n}", [])
            if offsets != [ident]:
                problems.append(f"sender {sender.index} message {n}: acknowledged as {ident}, in the journal at {offsets}")
            if ident <= previous:
                problems.append(f"sender {sender.index} message {n}: id {ident} not after {previous}")
            previous = ident
    duplicates = [cid for cid, offsets in by_client_id.items() if len(offsets) > 1]
    if duplicates:
        problems.append(f"client ids in the journal more than once: {duplicates[:5]}")
    room_ids = [m["offset"] for m in messages]
    position = {ident: i for i, ident in enumerate(room_ids)}
    for reader in readers:
        ids = reader.ids
        if len(ids) != len(set(ids)):
            seen, twice = set(), []
            for i in ids:
                if i in seen:
                    twice.append(i)
                seen.add(i)
            problems.append(f"reader {reader.index}: {len(twice)} duplicates (first {twice[:5]}; resumes at {reader.resume_points[:10]})")
        if not ids:
            continue
        if any(i not in position for i in ids):
            problems.append(f"reader {reader.index}: saw ids the final journal does not have: {[i for i in ids if i not in position][:5]}")
            continue
        expected = room_ids[position[ids[0]]:position[ids[-1]] + 1]
        if ids != expected:
            missing = sorted(set(expected) - set(ids))
            problems.append(f"reader {reader.index}: {len(missing)} gaps (first {missing[:5]}), order {'ok' if ids == sorted(ids) else 'broken'}")
    return problems, messages, acked_total


def conclude(name: str, problems: list[str], work: Path, keep: bool, success: str) -> int:
    """Prints the verdict; keeps the work directory when something failed (or with --keep)."""
    if problems:
        print(f"{name}: FAILED")
        for problem in problems[:20]:
            print("  " + problem)
        print(f"  work directory kept: {work}")
        return 1
    print(f"{name}: {success}")
    if not keep:
        subprocess.run(["rm", "-rf", str(work)])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=2, help="failovers (kill -9 of the leader), default 2")
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    chatlog = os.environ.get("CHATLOG", str(Path(__file__).resolve().parents[1] / ".build" / "debug" / "chatlog"))
    work = Path(tempfile.mkdtemp(prefix="chatlog-chaos-"))
    print(f"chaos: seed {seed}, {args.kills} kills, {args.senders} senders, {args.readers} readers, in {work}")
    cluster = Cluster(chatlog, work)
    cluster.start("a", None)
    cluster.start("b", cluster.url("a"))
    # Everyone joins on the leader first (joining appends a membership).
    setup = []
    for name in [f"sender{i}" for i in range(args.senders)] + [f"reader{i}" for i in range(args.readers)]:
        client = Client(cluster.leader_url, name, transports=["websocket"])
        assert client.call("join-group", {"group": ROOM}, timeout=10)["ok"]
        setup.append(client)
    for client in setup:
        client.close()
    stop = threading.Event()
    senders = [Sender(cluster, i, stop, random.Random(rng.random())) for i in range(args.senders)]
    readers = [Reader(cluster, i, stop, random.Random(rng.random())) for i in range(args.readers)]
    for thread in senders + readers:
        thread.start()
    failovers = []
    try:
        for kill in range(args.kills):
            time.sleep(rng.uniform(0.5, 2.5))
            old = cluster.leader_name
            new = cluster.other(old)
            victim = cluster.nodes[old]
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait(timeout=10)
            victim.stderr.close()
            started = time.time()
            promoted = subprocess.run([chatlog, "promote", "--server", cluster.url(new), "--replication-secret-file",
                                       str(cluster.secret)], capture_output=True, text=True, timeout=60)
            if promoted.returncode != 0:
                raise SystemExit(f"promotion failed: {promoted.stderr}")
            promotion = time.time() - started
            with cluster.lock:
                cluster.leader_name = new
            cluster.start(old, cluster.url(new))
            failovers.append((time.time() - started, json.loads(promoted.stdout)))
            print(f"  kill {kill + 1}: {old} killed, {new} promoted in {promotion:.1f} s ({promoted.stdout.strip()}), {old} follows again")
        time.sleep(rng.uniform(0.5, 1.5))
    finally:
        stop.set()
        for thread in senders + readers:
            thread.join(timeout=30)
    # Let the standby catch up, then stop both cleanly; their journals must then be identical.
    standby_name = cluster.other(cluster.leader_name)
    deadline = time.time() + 30
    while time.time() < deadline and not caught_up(cluster.url(standby_name), cluster.url(cluster.leader_name), cluster.secret):
        time.sleep(0.1)
    for name in (standby_name, cluster.leader_name):
        server = cluster.nodes[name]
        if server.process.poll() is None:
            server.stop()
    problems, messages, acked_total = verify(chatlog, work / cluster.leader_name, [work / standby_name], senders, readers)
    print(f"chaos: {acked_total} messages acknowledged, {len(messages)} in the final journal, "
          f"{sum(len(r.ids) for r in readers)} deliveries to {len(readers)} readers ({sum(r.resumes for r in readers)} resumes), "
          f"{len(failovers)} failovers (promotion + restart {', '.join(f'{d:.1f}s' for d, _ in failovers)})")
    return conclude("chaos", problems, work, args.keep,
                    "every acknowledged message exactly once, in each sender's order; no reader saw a gap or a duplicate")


if __name__ == "__main__":
    sys.exit(main())
