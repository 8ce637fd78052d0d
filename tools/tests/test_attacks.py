"""Attacks from outside, against a server in token mode: what an attacker tried, as tests that
fail if it works again. Real processes, real Socket.IO clients, tokens made by hand."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
import socketio

from chatserver import Client, Server
from conftest import run


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(secret: bytes, claims: dict) -> str:
    """An HS256 JWT with `claims`, signed as the server signs its own."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims, ensure_ascii=True).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(signature)}"


@pytest.fixture()
def secured(chatlog, journal):
    server = Server(chatlog, journal, "--events-per-second", "100000", "--events-burst", "100000", dev=False).start()
    secret = (journal / "auth.secret").read_text().strip().encode()

    def issue(sub: str, **claims) -> str:
        return token(secret, {"sub": sub, "exp": int(time.time()) + 3600, **claims})

    yield server, issue
    server.stop()


def refusal(url: str, auth: dict) -> str:
    """Connects with `auth`, expecting a refusal; returns its message."""
    client = socketio.Client(reconnection=False)
    errors = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(url, auth=auth, wait_timeout=5)
    assert len(errors) == 1 and errors[0]["data"] == {"code": "unauthorized"}, errors
    return errors[0]["message"]


def test_identities_that_unicode_would_merge_are_refused_everywhere(secured):
    server, issue = secured
    k = Client(server.url, token=issue("K"), transports=["websocket"])
    try:
        assert k.call("create-group", {"group": "ks-room", "private": True})["ok"]
        assert k.call("send-group-message", {"group": "ks-room", "message": "for K only", "created": 1})["ok"]
        # The Kelvin sign and a decomposed e-acute equal "K" and "jos\u00e9" to Swift's String: refused.
        for sub in ("\u212a", "jose\u0301"):
            assert "not a valid username" in refusal(server.url, {"token": issue(sub)})
            answer = requests.get(server.url + "/api/rooms", headers={"Authorization": "Bearer " + issue(sub)}, timeout=10)
            assert answer.status_code == 401, answer.text
        # Room ids in another form are refused on sockets and in API paths, not merged.
        assert k.call("join-group", {"group": "caf\u0065\u0301"})["error"]["code"] == "invalid_payload"
        path = "/api/rooms/" + urllib.parse.quote("caf\u0065\u0301") + "/messages"
        answer = requests.get(server.url + path, headers={"Authorization": "Bearer " + issue("K")}, timeout=10)
        assert answer.status_code == 400 and "NFC" in answer.json()["error"]["message"], answer.text
        # NFC identifiers beyond ASCII work.
        jose = Client(server.url, token=issue("jos\u00e9"), transports=["websocket"])
        assert jose.call("join-group", {"group": "caf\u00e9"})["ok"]
        assert "ks-room" not in [g["group"] for g in jose.call("my-groups", {})["groups"]]
        assert jose.call("history", {"group": "ks-room"})["ok"] is False
        jose.close()
    finally:
        k.close()


def test_tokens_not_valid_yet_or_issued_in_the_future_are_refused(secured):
    server, issue = secured
    hour = int(time.time()) + 3600
    assert "not valid yet" in refusal(server.url, {"token": issue("alice", nbf=hour)})
    assert "issued in the future" in refusal(server.url, {"token": issue("alice", iat=hour)})
    for claims in ({"nbf": hour}, {"iat": hour}):
        answer = requests.get(server.url + "/api/rooms", headers={"Authorization": "Bearer " + issue("alice", **claims)},
                              timeout=10)
        assert answer.status_code == 401, answer.text
    # Within the documented leeway (60 s), and in the past, they are fine.
    now = int(time.time())
    alice = Client(server.url, token=issue("alice", nbf=now + 30, iat=now - 10), transports=["websocket"])
    assert alice.call("join-group", {"group": "g"})["ok"]
    alice.close()


def test_a_non_member_learns_nothing_of_a_private_rooms_messages_by_deleting(secured):
    server, issue = secured
    owner = Client(server.url, token=issue("owner"), transports=["websocket"])
    probe = Client(server.url, token=issue("probe"), transports=["websocket"])
    try:
        assert owner.call("create-group", {"group": "private", "private": True})["ok"]
        sent = owner.call("send-group-message", {"group": "private", "message": "secret", "created": 1})
        there = probe.call("delete-message", {"group": "private", "id": sent["id"]})
        absent = probe.call("delete-message", {"group": "private", "id": sent["id"] + 1000})
        assert there["ok"] is False and absent["ok"] is False
        assert there["error"]["code"] == absent["error"]["code"] == "not_member", (there, absent)
        assert there["error"]["message"] == absent["error"]["message"]
    finally:
        owner.close()
        probe.close()


# Descriptors: idle connections from other processes, a slow loris on a later request.

HOLDER = r"""
import json, socket, sys, time
host, port, count, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
held, answered, refused = [], 0, 0
for _ in range(count):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((host, port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = s.recv(4096)
    except OSError:
        data = b""
    if data.startswith(b"HTTP/1.1 200"):
        answered += 1
        # Half a head of a second request: a slow loris after the first.
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost:")
        held.append(s)
    else:
        refused += 1
        s.close()
print(json.dumps({"answered": answered, "refused": refused}), flush=True)
deadline, closed = time.time() + hold, 0
for s in held:
    s.settimeout(max(0.01, deadline - time.time()))
    try:
        if s.recv(4096) == b"":
            closed += 1
    except OSError:
        pass
print(json.dumps({"closed_by_server": closed}), flush=True)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_connections_past_the_descriptor_limit_are_refused_idle_ones_closed_and_clients_served(chatlog, journal):
    # A process allowed 300 descriptors: 75 are kept in reserve, so it holds 225 connections.
    server = Server(chatlog, journal, "--http-idle-timeout", "4s", "--events-per-second", "100000",
                    "--events-burst", "100000", wrapper=["prlimit", "--nofile=300:300", "--"]).start()
    try:
        alice = Client(server.url, "alice", transports=["websocket"])
        assert alice.call("join-group", {"group": "g"})["ok"]
        holders = [subprocess.Popen([sys.executable, "-c", HOLDER, "127.0.0.1", str(server.port), "200", "15"],
                                    stdout=subprocess.PIPE, text=True) for _ in range(2)]
        first = [json.loads(holder.stdout.readline()) for holder in holders]
        answered = sum(f["answered"] for f in first)
        assert 150 <= answered <= 225, first
        assert sum(f["refused"] for f in first) >= 400 - 225, first
        # At the cap, with connections waiting: no spin on accept, and the existing client is served.
        before = cpu_seconds(server.process.pid)
        acks = [alice.call("send-group-message", {"group": "g", "message": f"m{n}", "created": n}) for n in range(20)]
        assert all(a["ok"] for a in acks), acks
        time.sleep(2)
        assert cpu_seconds(server.process.pid) - before < 1.0
        assert [m["id"] for m in alice.call("history", {"group": "g", "limit": 50})["messages"]] == [a["id"] for a in acks]
        # The slow lorises on a later request are closed within the idle timeout.
        closed = [json.loads(holder.stdout.readline()) for holder in holders]
        assert sum(c["closed_by_server"] for c in closed) == answered, closed
        for holder in holders:
            holder.wait(timeout=30)
        # Room again: a new client is served, and the refusals were counted.
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        refused = [line for line in metrics.splitlines() if line.startswith("http_connections_refused ")]
        assert refused and float(refused[0].split()[1]) >= 400 - 225, refused
        assert server.process.poll() is None
        alice.close()
    finally:
        assert server.stop() == 0


# Handshakes without credentials must not lock out a client with a token.

HANDSHAKER = r"""
import json, socket, sys, time
port, seconds, sources = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3].split(",")
counts = {"200": 0, "503": 0, "other": 0}
deadline, n = time.time() + seconds, 0
while time.time() < deadline:
    s = socket.socket()
    s.settimeout(5)
    try:
        s.bind((sources[n % len(sources)], 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = s.recv(64).split(b" ")[1].decode()
        counts[status if status in counts else "other"] += 1
    except OSError:
        counts["other"] += 1
    finally:
        s.close()
    n += 1
print(json.dumps(counts), flush=True)
"""


def test_anonymous_handshakes_never_lock_out_a_client_with_a_token(chatlog, journal):
    server = Server(chatlog, journal, "--connections-max", "50", "--anonymous-sessions-max", "100",
                    "--anonymous-sessions-per-address", "20", dev=False).start()
    try:
        secret = (journal / "auth.secret").read_text().strip().encode()
        many = ",".join(f"127.0.0.{n}" for n in range(2, 12))  # ten attacking addresses, and one more alone
        attackers = [subprocess.Popen([sys.executable, "-c", HANDSHAKER, str(server.port), "8", sources],
                                      stdout=subprocess.PIPE, text=True) for sources in (many, "127.0.0.20")]
        time.sleep(1)
        connected = 0
        for n in range(20):
            client = Client(server.url, token=token(secret, {"sub": f"user{n}", "exp": int(time.time()) + 600}))
            assert client.call("join-group", {"group": "g"})["ok"]
            client.close()
            connected += 1
        counts = [json.loads(attacker.stdout.readline()) for attacker in attackers]
        for attacker in attackers:
            attacker.wait(timeout=30)
        assert connected == 20
        # The pool of 100 turned over many times; the lone address met its cap of 20.
        assert counts[0]["200"] > 1000 and counts[1]["503"] > 0, counts
    finally:
        assert server.stop() == 0


# A reader that never reads must not take the server's memory.

def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_reader_that_never_reads_is_disconnected_before_it_takes_the_servers_memory(chatlog, journal):
    import socket

    import websocket
    server = Server(chatlog, journal, "--events-per-second", "100000", "--events-burst", "100000").start()
    try:
        writer = Client(server.url, "writer", transports=["websocket"])
        assert writer.call("join-group", {"group": "big"})["ok"]
        quotes = '"' * 4000  # JSON escapes each: a page of 200 is about 1.6 MB
        for n in range(200):
            assert writer.call("send-group-message", {"group": "big", "message": quotes, "created": n})["ok"]
        before = rss_bytes(server.process.pid)
        sloth = websocket.create_connection(
            server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
            sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),), timeout=10)
        assert sloth.recv().startswith("0")
        sloth.send('40{"username":"sloth"}')
        assert sloth.recv().startswith("40")
        largest, sent = before, 0
        try:
            for n in range(1100):
                sloth.send(f'42{n}["history",{{"group":"big","limit":200}}]')
                sent += 1
                if n % 50 == 0:
                    largest = max(largest, rss_bytes(server.process.pid))
        except OSError:
            pass  # disconnected as too slow, as it should be
        # The server answers while it reads the requests; the reader is dropped once about
        # 8 MiB wait for it (with what the socket buffers hold), not 1.6 GB later.
        deadline, dropped = time.time() + 60, False
        while time.time() < deadline and not dropped:
            largest = max(largest, rss_bytes(server.process.pid))
            metrics = requests.get(server.url + "/metrics", timeout=5).text
            dropped = "socketio_slow_clients_disconnected_total 1" in metrics
            time.sleep(0.2)
        assert dropped, [line for line in metrics.splitlines() if "slow" in line]
        assert largest - before < 300 << 20, f"the server grew by {(largest - before) >> 20} MiB"
        # Everyone else is served.
        assert writer.call("send-group-message", {"group": "big", "message": "still here", "created": 1})["ok"]
        writer.close()
        sloth.close()
    finally:
        assert server.stop() == 0


# HTTP edges: every request gets an answer, at once.

def exchange(port: int, request: bytes, wait: float = 3) -> tuple[bytes, bool]:
    """Sends `request` on a new connection; returns what came back and whether the server closed."""
    import socket
    connection = socket.create_connection(("127.0.0.1", port))
    connection.settimeout(wait)
    connection.sendall(request)
    received, closed = b"", False
    try:
        while True:
            data = connection.recv(4096)
            if not data:
                closed = True
                break
            received += data
    except socket.timeout:
        pass
    connection.close()
    return received, closed


def test_malformed_and_unusual_http_requests_are_answered_at_once(chatlog, journal):
    server = Server(chatlog, journal).start()
    try:
        for request in (b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
                        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40)):  # a TLS ClientHello
            started = time.time()
            answer, closed = exchange(server.port, request)
            assert answer.startswith(b"HTTP/1.1 400") and closed and time.time() - started < 2, (request, answer)
        answer, closed = exchange(server.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 405") and closed, answer
        # A WebSocket upgrade must be a GET.
        upgrade = (b"POST /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        answer, closed = exchange(server.port, upgrade)
        assert answer.startswith(b"HTTP/1.1 400") and closed, answer
        # HEAD is GET without the body.
        for path in ("/", "/healthz"):
            head = requests.head(server.url + path, timeout=5)
            get = requests.get(server.url + path, timeout=5)
            assert head.status_code == 200 and head.content == b"", path
            assert head.headers["Content-Length"] == str(len(get.content)), path
    finally:
        assert server.stop() == 0


def test_a_websocket_close_with_a_reserved_code_is_answered_with_a_protocol_error(chatlog, journal):
    import struct

    import websocket
    server = Server(chatlog, journal).start()
    try:
        for code, expected in ((999, 1002), (1005, 1002), (2999, 1002), (1000, 1000), (4000, 4000)):
            ws = websocket.create_connection(server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=5)
            ws.recv()
            ws.send(struct.pack("!H", code), opcode=websocket.ABNF.OPCODE_CLOSE)
            frame = ws.recv_frame()
            assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
            assert struct.unpack("!H", frame.data[:2])[0] == expected, (code, frame.data)
            ws.shutdown()
    finally:
        assert server.stop() == 0


def test_replication_status_needs_the_replication_secret_and_healthz_stays_public(chatlog, tmp_path):
    secret = tmp_path / "replication.secret"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    server = Server(chatlog, tmp_path / "journal", "--replication-secret-file", str(secret)).start()
    try:
        assert requests.get(server.url + "/api/replication", timeout=5).status_code == 401
        wrong = requests.get(server.url + "/api/replication", headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401 and "role" not in wrong.text
        right = requests.get(server.url + "/api/replication", headers={"Authorization": "Bearer " + secret.read_text().strip()},
                             timeout=5)
        assert right.status_code == 200 and right.json()["role"] == "leader"
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        cli = run(chatlog, "replication", "status", "--server", server.url, "--replication-secret-file", str(secret))
        assert cli.returncode == 0 and cli.stdout.startswith("leader, epoch 0"), cli.stderr
    finally:
        assert server.stop() == 0


def test_the_per_address_cap_counts_x_forwarded_for_only_when_trusted(chatlog, tmp_path):
    def handshakes(server: Server, forwarded: list[str]) -> list[int]:
        return [requests.get(server.url + "/socket.io/?EIO=4&transport=polling",
                             headers={"X-Forwarded-For": f"203.0.113.9, {address}"}, timeout=5).status_code
                for address in forwarded]

    # Without the flag the header is ignored: every handshake is the peer's, 127.0.0.1.
    plain = Server(chatlog, tmp_path / "plain", "--anonymous-sessions-per-address", "2", dev=False).start()
    try:
        assert handshakes(plain, ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [200, 200, 503]
    finally:
        assert plain.stop() == 0
    # Behind a proxy: the last entry is the client, the proxy's own addition.
    proxied = Server(chatlog, tmp_path / "proxied", "--anonymous-sessions-per-address", "2", "--trust-forwarded-for",
                     dev=False).start()
    try:
        assert handshakes(proxied, ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [200, 200, 200]
        assert handshakes(proxied, ["198.51.100.1", "198.51.100.1"]) == [200, 503]
    finally:
        assert proxied.stop() == 0
