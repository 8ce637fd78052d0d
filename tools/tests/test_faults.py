"""Faults injected from outside, as a fault-injection tester would: real processes paused with
SIGSTOP and killed with kill -9, nodes on test hosts of their own (network namespaces joined by
veth pairs) cut apart with iptables, and a journal on a small tmpfs that fills up.

The namespace and filesystem tests need root (they skip, saying so, without it); each removes
exactly what it made."""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import socketio

from chatserver import Client, Server
from conftest import run
from test_replication import caught_up, history_ids, leader, promote, secret, servers, standby, status, wait_until  # noqa: F401

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces, iptables and mounts")


def sh(*command: str):
    subprocess.run(command, check=True, capture_output=True, timeout=30)


class Hosts:
    """Two test hosts, a and b, each in a network namespace of its own. a and b talk over one
    veth pair (10.231.0.1 and 10.231.0.2); this namespace reaches a at 10.231.1.2 and b at
    10.231.2.2 over one more pair each, so clients keep reaching both nodes while the link
    between them is cut. `cut()` drops every packet between a and b (iptables on a);
    `heal()` removes the rules."""

    A_TO_B, B_TO_A = "10.231.0.1", "10.231.0.2"
    A, B = "10.231.1.2", "10.231.2.2"

    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.a, self.b = f"cl{tag}a", f"cl{tag}b"
        self.links = [f"cl{tag}ha", f"cl{tag}hb"]  # this namespace's ends
        self.made = []
        self.is_cut = False

    def __enter__(self):
        for namespace in (self.a, self.b):
            sh("ip", "netns", "add", namespace)
            self.made.append(namespace)
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
        sh("ip", "link", "add", "clab0", "netns", self.a, "type", "veth", "peer", "name", "clab1", "netns", self.b)
        self._address(self.a, "clab0", f"{self.A_TO_B}/24")
        self._address(self.b, "clab1", f"{self.B_TO_A}/24")
        for namespace, link, subnet in ((self.a, self.links[0], "10.231.1"), (self.b, self.links[1], "10.231.2")):
            sh("ip", "link", "add", link, "type", "veth", "peer", "name", "clh0", "netns", namespace)
            sh("ip", "addr", "add", f"{subnet}.1/24", "dev", link)
            sh("ip", "link", "set", link, "up")
            self._address(namespace, "clh0", f"{subnet}.2/24")
        return self

    @staticmethod
    def _address(namespace: str, link: str, address: str):
        sh("ip", "-n", namespace, "addr", "add", address, "dev", link)
        sh("ip", "-n", namespace, "link", "set", link, "up")

    def __exit__(self, *exc):
        # Deleting a namespace deletes its veth ends, their peers, and its iptables rules.
        for namespace in self.made:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)

    def wrapper(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", host]

    def cut(self):
        for chain, flag in (("INPUT", "-s"), ("OUTPUT", "-d")):
            sh("ip", "netns", "exec", self.a, "iptables", "-A", chain, flag, self.B_TO_A, "-j", "DROP")
        self.is_cut = True

    def heal(self):
        for chain, flag in (("INPUT", "-s"), ("OUTPUT", "-d")):
            sh("ip", "netns", "exec", self.a, "iptables", "-D", chain, flag, self.B_TO_A, "-j", "DROP")
        self.is_cut = False


@pytest.fixture()
def hosts():
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and iptables")
    if shutil.which("iptables") is None or shutil.which("ip") is None:
        pytest.skip("needs ip (iproute2) and iptables: make test installs them")
    with Hosts() as made:
        yield made


def on_host(server: Server, hosts: Hosts, host: str) -> Server:
    server.wrapper = hosts.wrapper(host)
    server.address = hosts.A if host == hosts.a else hosts.B
    return server


def across_hosts(chatlog, tmp_path: Path, secret: Path, servers, hosts: Hosts, leader_args: list[str],
                 standby_args: list[str]) -> tuple[Server, Server]:
    """A leader on host a and its standby on host b, following it over the a-b link."""
    lead = servers(on_host(leader(chatlog, tmp_path / "leader", secret, *leader_args), hosts, hosts.a))
    follower = servers(on_host(standby(chatlog, tmp_path / "standby", f"http://{hosts.A_TO_B}:{lead.port}", secret,
                                       *standby_args), hosts, hosts.b))
    return lead, follower


def health(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def messages(chatlog, directory: Path, room: str = "g") -> list[dict]:
    result = run(chatlog, "history", "--journal", str(directory), "--room", room, "--limit", "200", "--format", "json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def client_ids(chatlog, directory: Path, room: str = "g") -> list[str]:
    return [m.get("client_message_id") for m in messages(chatlog, directory, room)]


# 1. A forwarded command that its standby gave up on is never applied later.

def refused_when_late(chatlog, tmp_path: Path, lead: Server, client_id: str, timeout: float):
    """Waits until the leader has read the abandoned forward of `client_id`, and checks that it
    refused it rather than applying it."""
    wait_until(lambda: "arrived after its deadline" in lead.log() or client_id in client_ids(chatlog, tmp_path / "leader"),
               timeout=timeout, what="the late forward read")
    assert client_id not in client_ids(chatlog, tmp_path / "leader"), "the abandoned command was applied"
    assert "arrived after its deadline" in lead.log()


def test_a_forward_abandoned_while_the_leader_was_paused_is_refused_when_it_resumes(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret))
    follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret, "--forward-timeout", "2s"))
    bob = Client(follower.url, "bob", transports=["websocket"])
    try:
        assert bob.call("join-group", {"group": "g"})["ok"]
        os.kill(lead.process.pid, signal.SIGSTOP)
        try:
            started = time.time()
            lost = bob.call("send-group-message", {"group": "g", "message": "abandoned", "created": 1, "client_id": "x1"})
            assert lost["ok"] is False and lost["error"]["code"] == "unavailable", lost
            assert time.time() - started < 6
            time.sleep(1.5)  # past the command's deadline (half the forward timeout) on the leader's clock too
        finally:
            os.kill(lead.process.pid, signal.SIGCONT)
        # The leader reads the forward from its socket as it resumes: too late, refused.
        refused_when_late(chatlog, tmp_path, lead, "x1", timeout=15)
        after = bob.call("send-group-message", {"group": "g", "message": "next", "created": 2, "client_id": "y1"})
        assert after["ok"], after
        wait_until(lambda: "y1" in client_ids(chatlog, tmp_path / "leader"), what="the next message in History")
        assert "x1" not in client_ids(chatlog, tmp_path / "leader")
    finally:
        bob.close()


def test_a_forward_abandoned_during_a_partition_is_never_applied_and_a_resend_is_stored_once(chatlog, tmp_path, secret, servers, hosts):
    lead, follower = across_hosts(chatlog, tmp_path, secret, servers, hosts, ["--sync-replicas", "1", "--sync-timeout", "5s"],
                                  ["--forward-timeout", "3s"])
    bob = Client(follower.url, "bob", transports=["websocket"])
    try:
        assert bob.call("join-group", {"group": "g"})["ok"]
        wait_until(lambda: caught_up(follower.url, lead.url), what="catch-up")
        hosts.cut()
        lost = bob.call("send-group-message", {"group": "g", "message": "abandoned", "created": 1, "client_id": "x1"})
        assert lost["ok"] is False and lost["error"]["code"] == "unavailable", lost
        time.sleep(5)
        hosts.heal()
        # TCP delivers the abandoned request once the link is back: the leader refuses it.
        refused_when_late(chatlog, tmp_path, lead, "x1", timeout=40)
        # The client's resend is stored, once, even after it leaves the deduplication window.
        resent = bob.call("send-group-message", {"group": "g", "message": "abandoned", "created": 1, "client_id": "x1"})
        assert resent["ok"], resent
        for n in range(40):
            assert bob.call("send-group-message", {"group": "g", "message": f"m{n}", "created": 2 + n, "client_id": f"m{n}"})["ok"]
        time.sleep(2)
        ids = client_ids(chatlog, tmp_path / "leader")
        assert ids.count("x1") == 1 and ids == ["x1"] + [f"m{n}" for n in range(40)], ids
    finally:
        bob.close()


# 2. A fenced leader under load keeps serving reads and refuses writes; it does not exit.

def test_a_leader_fenced_under_load_stays_up_refuses_writes_and_serves_reads(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret, "--sync-replicas", "1", "--sync-timeout", "2s"))
    follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret, "--sync-replicas", "1"))
    senders = [Client(lead.url, f"u{n}", transports=["websocket"]) for n in range(3)]
    try:
        for sender in senders:
            assert sender.call("join-group", {"group": "g"})["ok"]
        wait_until(lambda: caught_up(follower.url, lead.url), what="catch-up")
        # Each sender keeps 8 sends in flight while the standby is promoted.
        answers, promoted = [], []
        promotion = threading.Thread(target=lambda: promoted.append(promote(chatlog, follower.url, secret)))
        for round_ in range(60):
            for sender in senders:
                for k in range(8):
                    try:
                        sender.sio.emit("send-group-message", {"group": "g", "message": f"{round_}.{k}", "created": 1},
                                        callback=answers.append)
                    except socketio.exceptions.BadNamespaceError:
                        time.sleep(1)
                        pytest.fail(f"the leader dropped its clients while fenced (exit {lead.process.poll()}):\n{lead.log()[-1500:]}")
            if round_ == 10:
                promotion.start()
            time.sleep(0.02)
        promotion.join(timeout=30)
        assert promoted and promoted[0]["old_leader_fenced"] is True, promoted
        wait_until(lambda: len(answers) == 60 * 3 * 8, timeout=30, what="every send answered")
        time.sleep(1)
        assert lead.process.poll() is None, "the fenced leader exited:\n" + lead.log()
        assert "Service failed" not in lead.log()
        assert status(lead.url)["role"] == "fenced"
        codes = {a["error"]["code"] for a in answers if not a["ok"]}
        assert codes <= {"not_leader", "unavailable"} and "not_leader" in codes, codes
        refused = senders[0].call("send-group-message", {"group": "g", "message": "late", "created": 2})
        assert refused["ok"] is False and refused["error"]["code"] == "not_leader"
        # Reads go on: what was committed before the fence.
        page = senders[1].call("history", {"group": "g", "limit": 200})
        assert page["ok"] is not False and page["messages"], page
        code, body = health(lead.url)
        assert code == 503 and "fenced" in body["reason"], body
        # Nothing uncommitted became visible: every message the old leader serves is on the new
        # leader. (Its journal may hold more, never committed: `chatlog history --journal` on
        # it would count those, as a restart would before cutting them as a standby.)
        served = [m["id"] for m in page["messages"]]
        on_new_leader = run(chatlog, "history", "--journal", str(tmp_path / "standby"), "--room", "g",
                            "--after", str(served[0] - 1), "--limit", "200", "--format", "json")
        assert set(served) <= {json.loads(line)["offset"] for line in on_new_leader.stdout.splitlines() if line.strip()}
    finally:
        for sender in senders:
            sender.close()
    assert lead.stop() == 0


# 3 and 8. A promotion does not wait for a paused or cut-off leader, which steps down by itself
# once it hears of the new epoch.

def test_a_paused_leader_is_promoted_past_at_once_and_steps_down_when_it_resumes(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret, "--sync-replicas", "1"))
    follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret, "--sync-replicas", "1"))
    alice = Client(lead.url, "alice", transports=["websocket"])
    assert alice.call("join-group", {"group": "g"})["ok"]
    wait_until(lambda: caught_up(follower.url, lead.url), what="catch-up")
    os.kill(lead.process.pid, signal.SIGSTOP)
    try:
        time.sleep(0.5)  # the standby's next fetch is held by the paused leader
        started = time.time()
        answer = promote(chatlog, follower.url, secret)
        took = time.time() - started
        assert answer["role"] == "leader" and answer["old_leader_fenced"] is False
        assert took < 5, f"the promotion took {took:.1f} s"
        time.sleep(3)  # the new leader tries again meanwhile
    finally:
        os.kill(lead.process.pid, signal.SIGCONT)
    wait_until(lambda: status(lead.url)["role"] == "fenced", timeout=10, what="the old leader fenced without a restart")
    refused = alice.call("send-group-message", {"group": "g", "message": "late", "created": 1})
    assert refused["ok"] is False and refused["error"]["code"] in ("not_leader", "unavailable"), refused
    alice.close()
    assert "the old leader learnt of this node's epoch" in follower.log() or "told by the leader" in lead.log()
    assert lead.stop() == 0


def test_a_cut_off_leader_is_promoted_past_at_once_and_steps_down_when_the_link_heals(chatlog, tmp_path, secret, servers, hosts):
    lead, follower = across_hosts(chatlog, tmp_path, secret, servers, hosts, ["--sync-replicas", "1"], ["--sync-replicas", "1"])
    alice = Client(lead.url, "alice", transports=["websocket"])
    try:
        assert alice.call("join-group", {"group": "g"})["ok"]
        wait_until(lambda: caught_up(follower.url, lead.url), what="catch-up")
        hosts.cut()
        time.sleep(0.5)
        started = time.time()
        answer = promote(chatlog, follower.url, secret)
        took = time.time() - started
        assert answer["role"] == "leader" and answer["old_leader_fenced"] is False
        assert took < 5, f"the promotion took {took:.1f} s"
        # Cut off, the old leader commits nothing (its only standby is gone) and is still "leader".
        refused = alice.call("send-group-message", {"group": "g", "message": "cut off", "created": 1})
        assert refused["ok"] is False and refused["error"]["code"] == "unavailable", refused
        assert status(lead.url)["role"] == "leader"
        hosts.heal()
        healed = time.time()
        wait_until(lambda: status(lead.url)["role"] == "fenced", timeout=15, what="the old leader fenced after healing")
        assert time.time() - healed < 12
        refused = alice.call("send-group-message", {"group": "g", "message": "late", "created": 2})
        assert refused["ok"] is False and refused["error"]["code"] == "not_leader", refused
        assert "cut off" not in [m["text"] for m in messages(chatlog, tmp_path / "standby")]
    finally:
        alice.close()
    assert lead.stop() == 0


# 5. A stop with an event that never committed is clean.

def test_a_stop_with_an_unreplicated_event_answers_it_snapshots_and_exits_0(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret, "--sync-replicas", "1", "--sync-timeout", "30s"))
    follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret))
    alice = Client(lead.url, "alice", transports=["websocket"])
    try:
        assert alice.call("join-group", {"group": "g"})["ok"]
        committed = alice.call("send-group-message", {"group": "g", "message": "replicated", "created": 1})
        assert committed["ok"], committed
        follower.kill()
        # In the leader's journal, never on a standby: still waiting when the stop comes.
        pending = []
        alice.sio.emit("send-group-message", {"group": "g", "message": "pending", "created": 2, "client_id": "p1"},
                       callback=pending.append)
        time.sleep(0.5)
        assert pending == []
        started = time.time()
        assert lead.stop() == 0, lead.log()
        assert time.time() - started < 12
        log = lead.log()
        assert "Service failed" not in log and "room-state snapshot written" in log, log
        # It was answered before the clients were let go, not dropped.
        assert pending and pending[0]["ok"] is False and pending[0]["error"]["code"] == "unavailable", pending
        assert "stopped before this command committed" in pending[0]["error"]["message"]
    finally:
        alice.close()
    # The snapshot holds what committed, up to the uncommitted event. (That event stays in the
    # journal: a leader restarted on it counts it as committed, as its ack said it might be.)
    assert (tmp_path / "leader" / "projections" / "room-state.snapshot").exists()
    [line] = [line for line in log.splitlines() if "room-state snapshot written" in line]
    assert f"journal.offset={committed['id'] + 1} " in line, line


# 6. History's write-ahead log stays bounded while the server runs.

def test_historys_write_ahead_log_stays_bounded_while_the_server_runs(chatlog, tmp_path):
    server = Server(chatlog, tmp_path / "journal", "--events-per-second", "100000", "--events-burst", "100000").start()
    alice = Client(server.url, "alice", transports=["websocket"])
    wal = tmp_path / "journal" / "projections" / "history.sqlite-wal"
    largest = 0
    try:
        assert alice.call("join-group", {"group": "g"})["ok"]
        for n in range(400):
            text = os.urandom(1750).hex()  # 3.5 KB that does not compress
            assert alice.call("send-group-message", {"group": "g", "message": text, "created": n})["ok"]
            if n % 20 == 0 and wal.exists():
                largest = max(largest, wal.stat().st_size)
        time.sleep(0.5)
        largest = max(largest, wal.stat().st_size if wal.exists() else 0)
    finally:
        alice.close()
        assert server.stop() == 0
    assert len(history_ids(chatlog, tmp_path / "journal")) == 200  # the page limit: the messages are there
    # 8 MiB (ProjectionDatabase.writeAheadLogBytesMax) plus one transaction.
    assert largest <= 10 << 20, f"the write-ahead log reached {largest} bytes"


# 4 and 7. A full disk: the stop after it is clean, and a restart on a still-full disk says so
# and leaves nothing behind.

@pytest.fixture()
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a small tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount))
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def fill(directory: Path):
    """Fills the filesystem of `directory` to the last byte."""
    try:
        ballast = open(directory / "ballast", "ab", buffering=0)
    except OSError:
        return  # not even room for a new file
    with ballast:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    ballast.write(b"\0" * size)
            except OSError:
                pass


def test_a_full_disk_fails_stop_the_stop_is_clean_and_a_restart_leaves_no_temporary_file(chatlog, small_disk):
    journal = small_disk / "journal"
    server = Server(chatlog, journal, "--events-per-second", "100000", "--events-burst", "100000").start()
    alice = Client(server.url, "alice", transports=["websocket"])
    refused = None
    try:
        assert alice.call("join-group", {"group": "g"})["ok"]
        for n in range(3000):
            ack = alice.call("send-group-message", {"group": "g", "message": os.urandom(1750).hex(), "created": n})
            if not ack["ok"]:
                refused = ack
                break
    finally:
        alice.close()
    assert refused and refused["error"]["code"] == "unavailable", "the disk must have filled"
    code = server.stop()
    assert code == 0, f"the stop after a full disk ended with {code}:\n{server.log()[-3000:]}"
    # A torn last batch, and a disk with no room for the copy of it that recovery keeps.
    segment = sorted(journal.glob("*.log"))[-1]
    with open(segment, "r+b") as file:
        file.truncate(max(0, segment.stat().st_size - 100))
    fill(small_disk)
    result = run(chatlog, "serve", "--journal", str(journal), "--port", "0", "--dev", timeout=30)
    assert result.returncode != 0 and "No space left on device" in result.stderr, result.stderr[-2000:]
    leftovers = [p.name for p in journal.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [], leftovers
