"""Cluster mode (`chatlog serve --etcd`, docs/CLUSTER.md) with real processes and a real etcd."""

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from chatserver import Client, Server
from conftest import free_port, run, wait_until

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (apt-get install etcd-server)")


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "replication.secret"
    path.write_text(os.urandom(24).hex() + "\n")
    return path


def node(chatlog: str, tmp_path: Path, etcd: str, secret: Path, name: str, port: int, *args: str) -> Server:
    return Server(chatlog, tmp_path / name, "--etcd", etcd, "--cluster", "chat", "--node", name,
                  "--advertise-url", f"http://127.0.0.1:{port}", "--replication-secret-file", str(secret), *args)


def replication(url: str, secret: Path) -> dict:
    request = urllib.request.Request(url + "/api/replication", headers={"Authorization": "Bearer " + secret.read_text().strip()})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def test_failovers_by_etcd_lose_no_acknowledged_message_and_readers_see_no_gap(chatlog):
    """The short form of tools/chaos_cluster.py: kill -9 of the leader, SIGSTOP of the leader past
    its lease, kill -9 of an etcd member and, as root, the leader's host cut off (each node on a
    network namespace of its own, every host dropping 2 % of its packets), with senders and
    readers on every node."""
    separate_hosts = os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("iptables") is not None
    faults = os.environ.get("CHATLOG_CLUSTER_FAULTS", "4" if separate_hosts else "3")
    command = [sys.executable, str(ROOT / "tools" / "chaos_cluster.py"), "--faults", faults]
    if separate_hosts:
        command += ["--netns", "--lossy"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env={**os.environ, "CHATLOG": chatlog})
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every acknowledged message exactly once" in result.stdout
    assert "kill -9 of etcd member" in result.stdout and "SIGSTOP of" in result.stdout
    if separate_hosts:
        assert "cut off;" in result.stdout and "healed, it follows" in result.stdout


def test_nodes_show_the_cluster_and_a_stopped_leader_hands_over_at_once(chatlog, tmp_path, etcd, secret):
    ports = {"a": free_port(), "b": free_port()}
    a = node(chatlog, tmp_path, etcd, secret, "a", ports["a"]).start(port=ports["a"])
    b = None
    try:
        wait_until(lambda: replication(a.url, secret)["cluster"]["role"] == "leader", what="a leading")
        b = node(chatlog, tmp_path, etcd, secret, "b", ports["b"]).start(port=ports["b"])
        wait_until(lambda: replication(a.url, secret)["cluster"]["in_sync"] == ["a", "b"], what="b in sync")
        sender = Client(b.url, "alice", transports=["websocket"])
        assert sender.call("join-group", {"group": "g"})["ok"]
        acked = [sender.call("send-group-message", {"group": "g", "message": f"m{n}"})["id"] for n in range(5)]
        sender.close()

        status = replication(b.url, secret)
        assert status["cluster"]["name"] == "chat" and status["cluster"]["node"] == "b"
        assert status["cluster"]["role"] == "standby" and status["cluster"]["leader"] == "a"
        assert 0 < status["cluster"]["lease_seconds_left"] <= 3
        text = run(chatlog, "replication", "status", "--server", b.url, "--replication-secret-file", str(secret))
        assert text.returncode == 0, text.stderr
        assert text.stdout.splitlines()[1].startswith("cluster chat, node b: standby of a (epoch ")

        # A clean stop revokes the lease: b leads well before the lease's TTL could pass.
        stopped = time.monotonic()
        assert a.stop() == 0
        wait_until(lambda: replication(b.url, secret)["cluster"]["role"] == "leader", timeout=10, what="b leading")
        assert time.monotonic() - stopped < 2.5, "the stopped leader's lease was left to expire"
        reader = Client(b.url, "bob", transports=["websocket"])
        assert reader.call("join-group", {"group": "g", "after": 0})["ok"]
        replayed = reader.wait_for("send-group-message", count=len(acked))
        assert [m["id"] for m in replayed] == acked
        assert reader.call("send-group-message", {"group": "g", "message": "after"})["ok"]
        reader.close()
        # The old leader comes back as b's standby.
        a = node(chatlog, tmp_path, etcd, secret, "a", ports["a"]).start(port=ports["a"])
        wait_until(lambda: replication(a.url, secret)["cluster"]["role"] == "standby", what="a following b")
        wait_until(lambda: replication(a.url, secret)["committed_offset"] == replication(b.url, secret)["committed_offset"],
                   what="a caught up")
    finally:
        for server in (a, b):
            if server and server.process.poll() is None:
                server.stop()


def test_cluster_mode_refuses_what_cannot_work_with_one_clear_line(chatlog, tmp_path, etcd, secret):
    journal = str(tmp_path / "j")
    base = ["serve", "--journal", journal, "--dev", "--port", "0"]
    cluster = ["--etcd", etcd, "--cluster", "chat", "--node", "a", "--advertise-url", "http://127.0.0.1:1"]

    no_secret = run(chatlog, *base, *cluster)
    assert no_secret.returncode == 2 and "--replication-secret-file" in no_secret.stderr, no_secret.stderr

    both = run(chatlog, *base, *cluster, "--replication-secret-file", str(secret), "--standby-of", "http://127.0.0.1:2")
    assert both.returncode == 2 and "--standby-of does not go with --etcd" in both.stderr, both.stderr

    half = run(chatlog, *base, "--etcd", etcd, "--cluster", "chat")
    assert half.returncode == 64 and "--etcd needs --cluster, --node and --advertise-url" in half.stderr, half.stderr

    short_lease = run(chatlog, *base, *cluster, "--replication-secret-file", str(secret), "--lease-ttl", "1s")
    assert short_lease.returncode == 2 and "--lease-ttl must be 2 to 60 seconds" in short_lease.stderr, short_lease.stderr

    started = time.monotonic()
    down = run(chatlog, "serve", "--journal", journal, "--dev", "--port", "0", "--etcd", f"http://127.0.0.1:{free_port()}",
               "--cluster", "chat", "--node", "a", "--advertise-url", "http://127.0.0.1:1", "--replication-secret-file", str(secret))
    assert down.returncode == 2 and "etcd unavailable" in down.stderr, down.stderr
    assert time.monotonic() - started < 15
    assert not (tmp_path / "j" / "cluster").exists(), "a journal was tied to a cluster nobody could reach"

    # A journal of another cluster (its id differs from etcd's) is refused before anything is written.
    other = tmp_path / "other"
    other.mkdir()
    (other / "cluster").write_text("cluster chat\nid another-cluster\n")
    first = Server(chatlog, tmp_path / "first", *cluster[:-1], "http://127.0.0.1:9", "--replication-secret-file", str(secret))
    first.start()
    try:
        refused = run(chatlog, "serve", "--journal", str(other), "--dev", "--port", "0", *cluster[:-4], "--node", "z",
                      "--advertise-url", "http://127.0.0.1:1", "--replication-secret-file", str(secret))
        assert refused.returncode == 2 and "another-cluster" in refused.stderr, refused.stderr
        assert not (other / "journal.meta").exists()
    finally:
        first.stop()


def start_three(chatlog, tmp_path, etcd, secret, nodes: dict):
    """Nodes a (the leader), b and c with --sync-replicas 1, into `nodes`, once all three are in sync."""
    ports = {name: free_port() for name in "abc"}
    nodes["a"] = node(chatlog, tmp_path, etcd, secret, "a", ports["a"], "--sync-replicas", "1").start(port=ports["a"])
    wait_until(lambda: replication(nodes["a"].url, secret)["cluster"]["role"] == "leader", what="a leading")
    for name in "bc":
        nodes[name] = node(chatlog, tmp_path, etcd, secret, name, ports[name], "--sync-replicas", "1").start(port=ports[name])
    wait_until(lambda: replication(nodes["a"].url, secret)["cluster"]["in_sync"] == ["a", "b", "c"], what="b and c in sync")


def test_a_switchover_moves_leadership_through_etcd_with_no_loss_and_a_short_pause(chatlog, tmp_path, etcd, secret):
    nodes = {}
    try:
        start_three(chatlog, tmp_path, etcd, secret, nodes)

        # A sender on c (its commands are forwarded to whoever leads) sends throughout,
        # resending with the same client id when a send is refused.
        acked, stop = [], threading.Event()

        def send():
            client = Client(nodes["c"].url, "alice", transports=["websocket"])
            client.call("join-group", {"group": "g"})
            n = 0
            while not stop.is_set():
                answer = client.call("send-group-message", {"group": "g", "message": f"m{n}", "client_id": f"m{n}"})
                if answer.get("ok"):
                    acked.append((time.monotonic(), f"m{n}", answer["id"]))
                    n += 1
                else:
                    time.sleep(0.01)
            client.close()

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        wait_until(lambda: len(acked) >= 20, what="sends acknowledged")
        refused = run(chatlog, "promote", "--server", nodes["a"].url, "--replication-secret-file", str(secret))
        assert refused.returncode != 0 and "already leads" in refused.stderr, refused.stderr
        promoted = run(chatlog, "promote", "--server", nodes["b"].url, "--replication-secret-file", str(secret))
        assert promoted.returncode == 0, promoted.stderr
        answer = json.loads(promoted.stdout)
        assert answer["role"] == "leader"
        wait_until(lambda: replication(nodes["b"].url, secret)["cluster"]["role"] == "leader", what="b leading")
        count = len(acked)
        wait_until(lambda: len(acked) >= count + 20, what="sends acknowledged by the new leader")
        stop.set()
        sender.join(timeout=15)

        gaps = [later[0] - earlier[0] for earlier, later in zip(acked, acked[1:])]
        print(f"longest pause between acknowledged sends: {max(gaps):.3f} s")
        assert max(gaps) < 1.0, f"the sends paused for {max(gaps):.2f} s"
        # Every acknowledged message is in the new leader's history exactly once, at its id.
        reader = Client(nodes["b"].url, "bob", transports=["websocket"])
        assert reader.call("join-group", {"group": "g", "after": 0})["ok"]
        seen = reader.wait_for("send-group-message", count=len(acked))
        reader.close()
        by_text = {}
        for message in seen:
            by_text.setdefault(message["message"], []).append(message["id"])
        assert all(by_text.get(text) == [ident] for _, text, ident in acked)
        # The old leader follows the new one.
        wait_until(lambda: replication(nodes["a"].url, secret)["cluster"]["role"] == "standby", what="a following b")
    finally:
        for server in nodes.values():
            if server.process.poll() is None:
                server.stop()


def test_a_nodes_settings_can_come_from_a_file_and_the_environment_with_flags_first(chatlog, tmp_path, etcd, secret):
    port = free_port()
    settings = tmp_path / "node.json"
    settings.write_text(json.dumps({
        "journal": str(tmp_path / "a"), "dev": True, "port": 1, "etcd": etcd, "cluster": "chat", "node": "a",
        "advertise-url": f"http://127.0.0.1:{port}", "replication-secret-file": str(secret), "log-level": "notice",
    }))
    # The file says port 1, the environment port, and the flag --port would win over both.
    env = {**os.environ, "CHATLOG_CONFIG": str(settings), "CHATLOG_PORT": str(port), "CHATLOG_LEASE_TTL": "3s"}
    process = subprocess.Popen([chatlog, "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert line.strip() == f"listening on http://127.0.0.1:{port}", line + process.stderr.read(2000)
        status = replication(f"http://127.0.0.1:{port}", secret)
        assert status["cluster"]["node"] == "a" and status["cluster"]["role"] == "leader"
        assert 2 < status["cluster"]["lease_seconds_left"] <= 3, "CHATLOG_LEASE_TTL was not applied"
    finally:
        process.terminate()
        process.wait(timeout=15)
    flag = run(chatlog, "serve", "--port", "70000", "--config", str(settings))
    assert flag.returncode == 64 and "--port" in flag.stderr
    bad = subprocess.run([chatlog, "serve", "--config", str(settings)], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "CHATLOG_DEV": "maybe"})
    assert bad.returncode == 2 and "dev (CHATLOG_DEV or the file) is true or false" in bad.stderr, bad.stderr
    (tmp_path / "broken.json").write_text("{not json")
    broken = run(chatlog, "serve", "--config", str(tmp_path / "broken.json"))
    assert broken.returncode == 2 and "broken.json is not a JSON object of settings" in broken.stderr, broken.stderr


def test_every_serve_option_can_come_from_a_file_or_the_environment(chatlog):
    """ServeSettings.settings lists every option of serve (a new option must be added there)."""
    dumped = json.loads(run(chatlog, "serve", "--experimental-dump-help").stdout)
    options = {name["name"] for argument in dumped["command"]["arguments"] if argument.get("shouldDisplay", True)
               for name in argument.get("names", []) if name["kind"] == "long"}
    assert {"port", "etcd", "advertise-url", "tls-cert"} <= options
    listed = set(re.findall(r"CHATLOG_[A-Z_]+", run(chatlog, "serve", "--help").stdout.replace("\n", " ")))
    expected = {"CHATLOG_" + name.upper().replace("-", "_") for name in options - {"help", "config", "version"}}
    assert expected <= listed, sorted(expected - listed)


def test_a_switchover_to_a_node_that_cannot_catch_up_is_called_off_and_nothing_changes(chatlog, tmp_path, etcd, secret):
    nodes = {}
    try:
        start_three(chatlog, tmp_path, etcd, secret, nodes)

        def handover(to: str) -> tuple[int, dict]:
            request = urllib.request.Request(f"{nodes['a'].url}/replication/v1/handover?to={to}", data=b"{}", method="POST",
                                             headers={"Authorization": "Bearer " + secret.read_text().strip()})
            try:
                with urllib.request.urlopen(request, timeout=20) as response:
                    return response.status, json.load(response)
            except urllib.error.HTTPError as error:
                return error.code, json.load(error)

        status, body = handover("z")
        assert status == 409 and body["error"]["code"] == "not_in_sync", body
        sender = Client(nodes["a"].url, "alice", transports=["websocket"])
        assert sender.call("join-group", {"group": "g"})["ok"]
        nodes["c"].process.send_signal(signal.SIGSTOP)  # c cannot catch up with what a appends next
        try:
            sender.emit("send-group-message", {"group": "g", "message": "held", "client_id": "held"})
            status, body = handover("c")
        finally:
            nodes["c"].process.send_signal(signal.SIGCONT)
        assert status == 503 and "called off" in body["error"]["message"], body
        # Nothing changed: a leads under the same epoch and takes commands again.
        assert replication(nodes["a"].url, secret)["cluster"]["role"] == "leader"
        assert sender.call("send-group-message", {"group": "g", "message": "after", "client_id": "after"}, timeout=15)["ok"]
        sender.close()
    finally:
        for server in nodes.values():
            if server.process.poll() is None:
                server.stop()
