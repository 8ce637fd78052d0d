"""Replication (FORMAT.md §11): `chatlog serve --standby-of` copies its leader's journal byte for byte,
serves reads from it, and refuses what it must refuse; bad input never reaches a journal."""

import base64
import hashlib
import json
import os
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from chatserver import Client, Server
from conftest import run

SEGMENT_BYTES = str(5 << 20)  # the smallest segment that holds the journal's largest batch, and a bit


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "replication.secret"
    path.write_text(base64.b64encode(os.urandom(24)).decode() + "\n")
    return path


# The replication secret of each server these tests started, by URL: `GET /api/replication`
# needs it.
SECRETS: dict[str, str] = {}


def secret_of(server: Server) -> str | None:
    args = server.args
    if "--replication-secret-file" not in args:
        return None
    return Path(args[args.index("--replication-secret-file") + 1]).read_text().strip()


@pytest.fixture()
def servers():
    started = []

    def start(server: Server, port: int = 0) -> Server:
        started.append(server)
        server.start(port=port)
        if (secret := secret_of(server)) is not None:
            SECRETS[server.url] = secret
        return server

    yield start
    for server in started:
        if server.process and server.process.poll() is None:
            server.kill()


def leader(chatlog, directory: Path, secret: Path | None, *args: str) -> Server:
    extra = ["--replication-secret-file", str(secret)] if secret else []
    return Server(chatlog, directory, "--events-per-second", "100000", "--events-burst", "100000", *extra, *args)


def standby(chatlog, directory: Path, leader_url: str, secret: Path, *args: str, name: str = "s1") -> Server:
    return Server(chatlog, directory, "--standby-of", leader_url, "--replication-secret-file", str(secret),
                  "--standby-name", name, *args)


def status(url: str) -> dict:
    request = urllib.request.Request(url + "/api/replication", headers={"Authorization": "Bearer " + SECRETS[url]})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def wait_until(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s")


def caught_up(standby_url: str, leader_url: str) -> bool:
    """The standby's journal has the leader's, and its live state (the tailer's position, which
    clients' joins and replays answer from) has applied all of it."""
    ours, theirs = status(standby_url), status(leader_url)
    live = requests.get(standby_url + "/healthz", timeout=5).json().get("offset")
    return (ours["committed_offset"] == theirs["committed_offset"] and ours["leader"]["state"] == "following"
            and live == theirs["committed_offset"])


def files(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if p.suffix in (".log", ".index")}


def send(url: str, count: int, room: str = "g", size: int = 40, user: str = "alice") -> list[int]:
    client = Client(url, user, transports=["websocket"])
    try:
        assert client.call("join-group", {"group": room})["ok"]
        ids = []
        for n in range(count):
            text = base64.b64encode(os.urandom(size * 3 // 4)).decode()[:size]
            answer = client.call("send-group-message", {"group": room, "message": f"{n} {text}", "created": n})
            assert answer["ok"], answer
            ids.append(answer["id"])
        return ids
    finally:
        client.close()


def fetch(url: str, query: str, secret: str | None, path: str = "/replication/v1/fetch"):
    """A raw fetch: (status, body bytes)."""
    request = urllib.request.Request(url + path + "?" + query)
    if secret is not None:
        request.add_header("Authorization", "Bearer " + secret)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def error_code(body: bytes) -> str:
    return json.loads(body)["error"]["code"]


def test_a_standby_catches_up_from_empty_follows_live_and_its_segments_are_byte_identical(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret, "--segment-bytes", SEGMENT_BYTES))
    # About 8 MB of messages that LZ4 cannot shrink much: two segments and the start of a third.
    send(lead.url, 2000, size=4000)
    assert len([p for p in (tmp_path / "leader").iterdir() if p.suffix == ".log"]) >= 2
    follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret, "--segment-bytes", SEGMENT_BYTES))
    wait_until(lambda: caught_up(follower.url, lead.url), what="catch-up from empty")
    # Live: a client of the standby receives what is sent to the leader, in order.
    reader = Client(follower.url, "alice", transports=["websocket"])
    joined = reader.call("join-group", {"group": "g"})
    assert joined["ok"] and joined["last_id"] == status(lead.url)["committed_offset"] - 1
    ids = send(lead.url, 30)
    got = reader.wait_for("send-group-message", count=30, timeout=20)
    assert [m["id"] for m in got] == ids
    reader.close()
    leader_status = status(lead.url)
    assert leader_status["role"] == "leader"
    [entry] = leader_status["standbys"]
    assert entry["name"] == "s1" and entry["connected"] and entry["lag_events"] == 0 and entry["lag_bytes"] == 0
    assert entry["durable_offset"] == leader_status["committed_offset"]
    assert follower.stop() == 0 and lead.stop() == 0
    leader_files = files(tmp_path / "leader")
    assert len(leader_files) >= 4
    assert files(tmp_path / "standby") == leader_files


def test_a_read_only_standby_serves_history_and_resume_and_refuses_writes_with_not_leader(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret))
    ids = send(lead.url, 20)
    follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret, "--read-only"))
    wait_until(lambda: caught_up(follower.url, lead.url), what="catch-up")
    alice = Client(follower.url, "alice", transports=["polling"])
    resumed = alice.call("join-group", {"group": "g", "after": ids[9]})  # a member: nothing to write
    assert resumed["ok"] and resumed["last_id"] == ids[-1]
    assert [m["id"] for m in alice.received("send-group-message")] == ids[10:]
    history = alice.call("history", {"group": "g", "limit": 5})
    assert [m["id"] for m in history["messages"]] == ids[-5:]
    refused = alice.call("send-group-message", {"group": "g", "message": "hi", "created": 1})
    assert refused["ok"] is False and refused["error"]["code"] == "not_leader"
    assert lead.url in refused["error"]["message"]
    bob = Client(follower.url, "bob", transports=["websocket"])
    refused = bob.call("join-group", {"group": "g"})  # joining would append a membership
    assert refused["ok"] is False and refused["error"]["code"] == "not_leader"
    alice.close()
    bob.close()
    text = run(chatlog, "replication", "status", "--server", follower.url, "--replication-secret-file", str(secret))
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].startswith("standby, epoch 0")
    assert f"leader {lead.url}: following, 0 events behind" in text.stdout
    text = run(chatlog, "replication", "status", "--server", lead.url, "--replication-secret-file", str(secret))
    assert "standby s1: connected" in text.stdout and "0 events (about 0 bytes) behind" in text.stdout


def test_a_standby_follows_again_after_its_leader_is_killed_and_restarted(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret))
    send(lead.url, 10)
    follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret))
    wait_until(lambda: caught_up(follower.url, lead.url), what="catch-up")
    port = lead.port
    lead.kill()
    wait_until(lambda: status(follower.url)["leader"]["state"] == "retrying", what="the standby noticing")
    lead = servers(leader(chatlog, tmp_path / "leader", secret), port=port)
    send(lead.url, 15)
    wait_until(lambda: caught_up(follower.url, lead.url), what="catch-up after the restart")
    assert follower.stop() == 0 and lead.stop() == 0
    assert files(tmp_path / "standby") == files(tmp_path / "leader")


class CuttingProxy:
    """A TCP proxy to the leader that cuts its first `cuts` connections after `budget` bytes of the
    leader's answer: a fetch response torn in the middle of a batch."""

    def __init__(self, upstream_port: int, budget: int, cuts: int):
        self.upstream_port, self.budget, self.cuts = upstream_port, budget, cuts
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            limit = self.budget if self.cut < self.cuts else None
            if limit is not None:
                self.cut += 1
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, limit), daemon=True).start()

    @staticmethod
    def _pipe(source, target, limit):
        sent = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    target.sendall(data[:limit - sent])
                    break
                target.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (source, target):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.listener.close()


def test_a_fetch_cut_mid_batch_writes_nothing_partial_and_the_standby_fetches_again(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret))
    send(lead.url, 300, size=2000)
    proxy = CuttingProxy(lead.port, budget=200_000, cuts=3)
    try:
        follower = servers(standby(chatlog, tmp_path / "standby", f"http://127.0.0.1:{proxy.port}", secret))
        wait_until(lambda: status(follower.url)["committed_offset"] == status(lead.url)["committed_offset"],
                   what="catch-up through the cutting proxy")
        assert proxy.cut == 3
        assert follower.stop() == 0
    finally:
        proxy.close()
    assert "replication interrupted; retrying" in follower.log()
    assert lead.stop() == 0
    assert files(tmp_path / "standby") == files(tmp_path / "leader")


def test_the_fetch_endpoint_refuses_bad_requests_with_clear_errors(chatlog, tmp_path, secret, servers):
    key = secret.read_text().strip()
    lead = servers(leader(chatlog, tmp_path / "leader", secret))
    send(lead.url, 5)
    # Senders at once: group commit puts several records in one batch.
    senders = [threading.Thread(target=send, args=(lead.url, 20), kwargs={"user": f"u{n}"}) for n in range(6)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    end = status(lead.url)["committed_offset"]
    assert fetch(lead.url, "from=0", None)[0] == 401
    assert fetch(lead.url, "from=0", "not-the-secret-at-all")[0] == 401
    code, body = fetch(lead.url, "from=0", key, path="/replication/v2/fetch")
    assert code == 400 and error_code(body) == "unsupported_version"
    for query in ["", "from=abc", "from=-1", "from=0&max_bytes=x", "from=0&standby=no%20spaces", "from=0&durable=5"]:
        code, body = fetch(lead.url, query, key)
        assert code == 400 and error_code(body) == "invalid_request", query
    code, body = fetch(lead.url, f"from={end + 5}", key)
    assert code == 409 and error_code(body) == "offset_ahead"
    # A fetch from the start: the header, then batches that parse and chain to `next`.
    code, body = fetch(lead.url, "from=0", key)
    assert code == 200 and body[:4] == b"CHLR"
    version, flags, epoch = struct.unpack_from("<HHI", body, 4)
    segment, first, nxt, committed, earliest = struct.unpack_from("<5Q", body, 16)
    assert (version, flags, epoch, segment, first, nxt, committed, earliest) == (1, 0, 0, 0, 0, end, end, 0)
    position, expected, inside = 56, 0, None
    while position < len(body):
        assert body[position:position + 4] == b"CHLB"
        base, count, length = struct.unpack_from("<QII", body, position + 16)
        assert base == expected
        if count > 1 and inside is None:
            inside = base + 1
        expected, position = base + count, position + 56 + length
    assert expected == end and position == len(body)
    assert inside is not None, "concurrent senders must have shared a batch"
    code, body = fetch(lead.url, f"from={inside}", key)
    assert code == 409 and error_code(body) == "not_batch_boundary"
    # Nothing new: a held fetch answers with no batches after wait_ms.
    started = time.time()
    code, body = fetch(lead.url, f"from={end}&wait_ms=300", key)
    assert code == 200 and len(body) == 56 and time.time() - started >= 0.25
    # The standby's last batch is not the leader's: same epochs, other bytes.
    code, body = fetch(lead.url, f"from={end}&epoch=0&last_crc=12345", key)
    assert code == 409 and error_code(body) == "conflict"
    # Forwarded commands and seeding need the secret too.
    for path, method in [("/replication/v1/command", "POST"), ("/replication/v1/snapshot", "GET"), ("/api/promote", "POST")]:
        request = urllib.request.Request(lead.url + path, data=b"{}" if method == "POST" else None, method=method)
        request.add_header("Authorization", "Bearer not-the-secret-at-all")
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError(f"{path} answered without the secret")
        except urllib.error.HTTPError as error:
            assert error.code == 401 and error_code(error.read()) == "unauthorized", path
    # A fetch from a standby that has seen a newer leader epoch fences this leader.
    code, body = fetch(lead.url, f"from={end}&epoch=7", key)
    assert code == 409 and error_code(body) == "fenced"
    assert status(lead.url)["role"] == "fenced"
    writer = Client(lead.url, "alice", transports=["websocket"])
    refused = writer.call("send-group-message", {"group": "g", "message": "late", "created": 1})
    writer.close()
    assert refused["ok"] is False and refused["error"]["code"] == "not_leader"
    assert fetch(lead.url, f"from={end}", key)[0] == 409
    assert lead.stop() == 0
    bare = servers(leader(chatlog, tmp_path / "bare", None))
    code, body = fetch(bare.url, "from=0", key)
    assert code == 403 and error_code(body) == "replication_disabled"


def test_a_standby_with_the_wrong_secret_or_a_journal_the_leader_never_wrote_writes_nothing(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret))
    send(lead.url, 5)
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("x" * 32)
    stranger = servers(standby(chatlog, tmp_path / "stranger", lead.url, wrong))
    failing = wait_until(lambda: status(stranger.url)["leader"]["state"] == "failing" and status(stranger.url)["leader"],
                         what="the wrong secret refused")
    assert "unauthorized" in failing["last_error"]
    assert stranger.stop() == 0
    assert sum(p.stat().st_size for p in (tmp_path / "stranger").glob("*.log")) == 0
    # A journal longer than the leader's: records the leader never committed.
    other = servers(leader(chatlog, tmp_path / "other", None))
    send(other.url, 40)
    assert other.stop() == 0
    before = files(tmp_path / "other")
    ahead = servers(standby(chatlog, tmp_path / "other", lead.url, secret))
    failing = wait_until(lambda: status(ahead.url)["leader"]["state"] == "failing" and status(ahead.url)["leader"],
                         what="offset_ahead")
    assert "offset_ahead" in failing["last_error"]
    assert ahead.stop() == 0
    assert files(tmp_path / "other") == before


class FakeLeader:
    """An HTTP server that answers every fetch with `body` (a bad leader, or not a leader)."""

    def __init__(self, status: int, body: bytes):
        outer = self
        self.fetches = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.fetches += 1
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def good_response(chatlog, tmp_path, secret, servers) -> bytes:
    lead = servers(leader(chatlog, tmp_path / "source", secret))
    send(lead.url, 5)
    code, body = fetch(lead.url, "from=0", secret.read_text().strip())
    assert code == 200
    assert lead.stop() == 0
    return body


def flipped(body: bytes, position: int) -> bytes:
    return body[:position] + bytes([body[position] ^ 0x01]) + body[position + 1:]


def test_corrupt_truncated_or_foreign_responses_never_reach_the_journal(chatlog, tmp_path, secret, servers):
    body = good_response(chatlog, tmp_path, secret, servers)
    first_batch_length = struct.unpack_from("<I", body, 56 + 28)[0]
    bad = {
        "a flipped payload bit": flipped(body, 56 + 56 + first_batch_length // 2),
        "a flipped header bit": flipped(body, 56 + 20),
        "a truncated batch": body[:len(body) - 7],
        "another protocol version": body[:4] + struct.pack("<H", 2) + body[6:],
        "not CHLR": b"HTTP" + body[4:],
        "batches that do not reach next": body[:32] + struct.pack("<Q", struct.unpack_from("<Q", body, 32)[0] + 3) + body[40:],
        "a header only": body[:40],
    }
    for what, answer in bad.items():
        fake = FakeLeader(200, answer)
        directory = tmp_path / ("standby-" + str(zlib.crc32(what.encode())))
        follower = servers(standby(chatlog, directory, fake.url, secret))
        try:
            leader_view = wait_until(lambda: status(follower.url)["leader"]["state"] != "connecting" and status(follower.url)["leader"],
                                     what=f"{what}: refused")
            assert leader_view["state"] in ("retrying", "failing") and leader_view["last_error"], what
            assert status(follower.url)["committed_offset"] == 0, what
        finally:
            assert follower.stop() == 0
            fake.close()
        assert sum(p.stat().st_size for p in directory.glob("*.log")) == 0, what
    # The good answer, served by the same fake leader, is taken whole.
    fake = FakeLeader(200, body)
    follower = servers(standby(chatlog, tmp_path / "standby-good", fake.url, secret))
    try:
        end = struct.unpack_from("<Q", body, 32)[0]
        wait_until(lambda: status(follower.url)["committed_offset"] == end, what="the good answer taken")
    finally:
        assert follower.stop() == 0
        fake.close()


def test_below_the_leaders_retention_a_standby_is_told_to_re_seed_and_an_empty_one_seeds_itself(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret, "--segment-bytes", SEGMENT_BYTES,
                          "--retention-bytes", SEGMENT_BYTES, "--snapshot-interval", "200ms"))
    early = send(lead.url, 10)
    # A standby that copied the start, then stopped while retention deleted it on the leader.
    behind = servers(standby(chatlog, tmp_path / "behind", lead.url, secret, name="behind"))
    wait_until(lambda: caught_up(behind.url, lead.url), what="catch-up")
    assert behind.stop() == 0
    send(lead.url, 3000, size=4000)
    wait_until(lambda: not (tmp_path / "leader" / ("0" * 20 + ".log")).exists(),
               what="retention deleting the first segment (once a snapshot covers it)")
    code, body = fetch(lead.url, f"from={early[-1] + 1}", secret.read_text().strip())
    assert code == 410 and error_code(body) == "out_of_range"
    assert "empty its journal directory" in json.loads(body)["error"]["message"]
    # A client resuming from before the oldest kept offset is told so too (and loads history).
    reader = Client(lead.url, "alice", transports=["websocket"])
    resumed = reader.call("join-group", {"group": "g", "after": 5})
    reader.close()
    assert resumed["ok"] is False and resumed["error"]["code"] == "out_of_range", resumed
    before = files(tmp_path / "behind")
    behind = servers(standby(chatlog, tmp_path / "behind", lead.url, secret, name="behind"))
    failing = wait_until(lambda: status(behind.url)["leader"]["state"] == "failing" and status(behind.url)["leader"],
                         what="out_of_range")
    assert "out_of_range" in failing["last_error"]
    assert behind.stop() == 0
    assert files(tmp_path / "behind") == before
    # An empty standby seeds itself: the leader's room state, and its journal from the leader's
    # oldest segment on; then it serves like any standby.
    fresh = servers(standby(chatlog, tmp_path / "fresh", lead.url, secret, "--segment-bytes", SEGMENT_BYTES, name="fresh"))
    wait_until(lambda: caught_up(fresh.url, lead.url), timeout=60, what="the seeded standby catching up")
    assert "seeded from the leader" in fresh.log()
    alice = Client(fresh.url, "alice", transports=["websocket"])
    joined = alice.call("join-group", {"group": "g"})  # a member by the seeded room state
    assert joined["ok"] and joined["last_id"] == status(lead.url)["committed_offset"] - 1, joined
    history = alice.call("history", {"group": "g", "limit": 3})
    sent = alice.call("send-group-message", {"group": "g", "message": "after the seed", "created": 1})  # forwarded
    alice.close()
    assert [m["id"] for m in history["messages"]] == list(range(joined["last_id"] - 2, joined["last_id"] + 1))
    assert sent["ok"] and sent["id"] == joined["last_id"] + 1, sent
    wait_until(lambda: caught_up(fresh.url, lead.url), what="the forwarded message copied")
    assert fresh.stop() == 0 and lead.stop() == 0
    leader_files, fresh_files = files(tmp_path / "leader"), files(tmp_path / "fresh")
    assert fresh_files == leader_files, "the seeded standby's segments are the leader's retained ones"


def test_an_empty_standby_seeds_itself_from_a_leader_whose_epoch_began_before_its_oldest_offset(chatlog, tmp_path, secret, servers):
    """A seeded journal holds no batch, so its first fetch carries no epoch. It used to send
    epoch 0, which a leader promoted before its oldest retained offset (every cluster leader)
    answered with `diverged`, for ever: the new standby never caught up."""
    args = ("--segment-bytes", SEGMENT_BYTES, "--retention-bytes", SEGMENT_BYTES, "--snapshot-interval", "200ms")
    lead = servers(leader(chatlog, tmp_path / "leader", secret, *args))
    send(lead.url, 10)
    assert lead.stop() == 0
    assert run(chatlog, "promote", "--journal", str(tmp_path / "leader")).returncode == 0  # epoch 1 from the end
    lead = servers(leader(chatlog, tmp_path / "leader", secret, *args))
    send(lead.url, 3000, size=4000)
    wait_until(lambda: not (tmp_path / "leader" / ("0" * 20 + ".log")).exists(), what="retention past the epoch's start")
    assert (tmp_path / "leader" / "leader-epochs").read_text() == "1 11\n"  # the room, then 10 messages
    fresh = servers(standby(chatlog, tmp_path / "fresh", lead.url, secret, *args[:2], name="fresh"))
    wait_until(lambda: caught_up(fresh.url, lead.url), timeout=60, what="the seeded standby catching up")
    assert "seeded from the leader" in fresh.log()
    assert fresh.stop() == 0 and lead.stop() == 0
    assert files(tmp_path / "fresh") == files(tmp_path / "leader")


def history_ids(chatlog, directory: Path, room: str = "g") -> list[int]:
    result = run(chatlog, "history", "--journal", str(directory), "--room", room, "--limit", "200", "--format", "json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["offset"] for line in result.stdout.splitlines() if line.strip()]


def test_with_sync_replicas_an_ack_means_the_standby_has_it_durable(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret, "--sync-replicas", "1", "--sync-timeout", "5s"))
    follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret))
    ids = send(lead.url, 60)
    # Every acknowledged message is on the standby's disk: kill it at once and read its journal.
    follower.process.kill()
    follower.process.wait(timeout=10)
    assert set(ids) <= set(history_ids(chatlog, tmp_path / "standby"))
    leader_view = status(lead.url)
    assert leader_view["sync_replicas"] == 1 and leader_view["replicated_offset"] > ids[-1]


def test_with_sync_replicas_and_no_standby_a_send_fails_unavailable_and_commits_once_one_catches_up(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret, "--sync-replicas", "1", "--sync-timeout", "1s"))
    alice = Client(lead.url, "alice", transports=["websocket"])
    try:
        # Even the room's creation waits for a standby: the join fails after the timeout...
        started = time.time()
        joined = alice.call("join-group", {"group": "g"})
        assert joined["ok"] is False and joined["error"]["code"] == "unavailable"
        assert 0.9 <= time.time() - started < 5
        assert "standby" in joined["error"]["message"]
        # ... and so does a send (decided against the appended, uncommitted room).
        refused = alice.call("send-group-message", {"group": "g", "message": "hello", "created": 1, "client_id": "c1"})
        assert refused["ok"] is False and refused["error"]["code"] == "unavailable", refused
        # Nothing unreplicated is visible: not in History, not in the leader's status.
        assert history_ids(chatlog, tmp_path / "leader") == []
        assert status(lead.url)["replicated_offset"] == 0
        follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret))
        wait_until(lambda: status(lead.url)["replicated_offset"] == status(lead.url)["committed_offset"] > 0,
                   what="replication")
        # Now both commit: joining again appends nothing; the resend finds the original.
        assert alice.call("join-group", {"group": "g"})["ok"]
        resent = alice.call("send-group-message", {"group": "g", "message": "hello", "created": 1, "client_id": "c1"})
        assert resent["ok"], resent
        fresh = alice.call("send-group-message", {"group": "g", "message": "again", "created": 2, "client_id": "c2"})
        assert fresh["ok"] and fresh["id"] > resent["id"]
        assert history_ids(chatlog, tmp_path / "leader") == [resent["id"], fresh["id"]]
        assert follower.stop() == 0
    finally:
        alice.close()


def promote(chatlog, url: str, secret: Path) -> dict:
    result = run(chatlog, "promote", "--server", url, "--replication-secret-file", str(secret))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_an_online_promotion_begins_a_new_epoch_and_fences_the_old_leader(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret))
    ids = send(lead.url, 20)
    follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret))
    wait_until(lambda: caught_up(follower.url, lead.url), what="catch-up")
    # A load balancer tells the writer from the readers by /healthz/leader and /healthz/standby.
    assert requests.get(follower.url + "/healthz", timeout=5).json()["role"] == "standby"
    assert requests.get(follower.url + "/healthz/standby", timeout=5).status_code == 200
    assert requests.get(follower.url + "/healthz/leader", timeout=5).status_code == 503
    reader = Client(follower.url, "alice", transports=["websocket"])
    assert reader.call("join-group", {"group": "g"})["ok"]
    answer = promote(chatlog, follower.url, secret)
    assert answer["role"] == "leader" and answer["epoch"] == 1 and answer["offset"] == ids[-1] + 1
    assert answer["old_leader_fenced"] is True
    # The old leader takes no more writes; the new one does, and its readers see them live.
    old = Client(lead.url, "alice", transports=["websocket"])
    refused = old.call("send-group-message", {"group": "g", "message": "late", "created": 1})
    assert refused["ok"] is False and refused["error"]["code"] == "not_leader"
    assert status(lead.url)["role"] == "fenced"
    fenced = requests.get(lead.url + "/healthz", timeout=5)
    assert fenced.status_code == 503 and fenced.json()["role"] == "fenced" and "fenced" in fenced.json()["reason"]
    assert requests.get(lead.url + "/healthz/leader", timeout=5).status_code == 503
    assert requests.get(follower.url + "/healthz/leader", timeout=5).status_code == 200
    old.close()
    ack = reader.call("send-group-message", {"group": "g", "message": "after", "created": 2})
    assert ack["ok"] and ack["id"] == ids[-1] + 1
    assert [m["id"] for m in reader.wait_for("send-group-message")] == [ack["id"]]
    reader.close()
    assert status(follower.url)["role"] == "leader" and status(follower.url)["epoch"] == 1
    # A second promotion is refused: it leads already.
    again = run(chatlog, "promote", "--server", follower.url, "--replication-secret-file", str(secret))
    assert again.returncode == 1 and again.stderr.startswith(f"chatlog promote: {follower.url}/api/promote answered 409 not_standby: ")
    assert "give the URL of one of its standbys" in again.stderr and len(again.stderr.splitlines()) == 1
    assert (tmp_path / "standby" / "leader-epochs").read_text() == f"1 {ids[-1] + 1}\n"


def test_a_former_leader_restarted_as_a_standby_cuts_what_the_new_leader_never_had(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "a", secret))
    agreed = send(lead.url, 10)
    follower = servers(standby(chatlog, tmp_path / "b", lead.url, secret))
    wait_until(lambda: caught_up(follower.url, lead.url), what="catch-up")
    assert follower.stop() == 0
    lost = send(lead.url, 7, room="g")  # never replicated: the leader is then lost
    port = lead.port
    lead.kill()
    result = run(chatlog, "promote", "--journal", str(tmp_path / "b"))
    assert result.returncode == 0 and "leader epoch 1" in result.stdout, result.stderr
    new = servers(leader(chatlog, tmp_path / "b", secret))
    after = send(new.url, 4)
    assert after[0] == agreed[-1] + 1  # the new leader's ids continue from what it had
    old = servers(standby(chatlog, tmp_path / "a", new.url, secret, name="a"), port=port)
    wait_until(lambda: caught_up(old.url, new.url), what="the former leader following")
    log = old.log()
    assert "journal cut back to where it agrees with its leader" in log
    assert list((tmp_path / "a").glob("*.broken")), "the cut bytes are kept"
    reader = Client(old.url, "alice", transports=["websocket"])
    history = reader.call("history", {"group": "g", "limit": 50})
    reader.close()
    assert [m["id"] for m in history["messages"]] == agreed + after
    assert set(lost) & set(after) == set(lost[:4]), "the lost messages' ids were reused by the new leader"
    assert old.stop() == 0 and new.stop() == 0
    assert files(tmp_path / "a") == files(tmp_path / "b")


def test_two_nodes_promoted_to_the_same_epoch_are_refused_until_an_operator_cuts_one(chatlog, tmp_path, secret, servers):
    # a leads, b copies 10 messages; then both are promoted to epoch 1 without knowing of each
    # other, and each writes its own messages at the same offsets.
    lead = servers(leader(chatlog, tmp_path / "a", secret))
    agreed = send(lead.url, 10)
    follower = servers(standby(chatlog, tmp_path / "b", lead.url, secret))
    wait_until(lambda: caught_up(follower.url, lead.url), what="catch-up")
    assert follower.stop() == 0 and lead.stop() == 0
    for node in ("a", "b"):
        result = run(chatlog, "promote", "--journal", str(tmp_path / node))
        assert result.returncode == 0 and "leader epoch 1" in result.stdout, result.stderr
    for count, user, node in ((5, "carol", "a"), (3, "alice", "b")):
        server = servers(leader(chatlog, tmp_path / node, secret))
        ids = send(server.url, count, user=user)
        assert server.stop() == 0
    kept = ids
    b = servers(leader(chatlog, tmp_path / "b", secret))
    # a as a standby of b: same epochs, other bytes. Nothing is cut by itself.
    before = files(tmp_path / "a")
    a = servers(standby(chatlog, tmp_path / "a", b.url, secret, name="a"))
    failing = wait_until(lambda: status(a.url)["leader"]["state"] == "failing" and status(a.url)["leader"],
                         what="the conflict reported")
    assert "offset_ahead" in failing["last_error"] or "conflict" in failing["last_error"]
    cut_to = int(failing["last_error"].split("--to ")[1].split("`")[0])
    assert cut_to == agreed[-1] + 1, "where both began epoch 1"
    assert a.stop() == 0
    assert files(tmp_path / "a") == before
    # The operator keeps b's records: a is cut back, then follows b.
    result = run(chatlog, "journal", "truncate", "--journal", str(tmp_path / "a"), "--to", str(cut_to))
    assert result.returncode == 0 and "kept in" in result.stdout, result.stderr
    # An operator's cut says what it did, not a reason it does not know.
    assert "journal cut back" in result.stderr and "leader" not in result.stderr, result.stderr
    a = servers(standby(chatlog, tmp_path / "a", b.url, secret, name="a"))
    wait_until(lambda: caught_up(a.url, b.url), what="a following b")
    reader = Client(a.url, "alice", transports=["websocket"])
    history = reader.call("history", {"group": "g", "limit": 50})
    reader.close()
    assert [m["id"] for m in history["messages"]] == agreed + kept
    assert a.stop() == 0 and b.stop() == 0
    assert files(tmp_path / "a") == files(tmp_path / "b")


def test_a_standby_forwards_its_clients_commands_to_the_leader(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret, "--sync-replicas", "1"))
    follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret))
    on_leader = Client(lead.url, "alice", transports=["websocket"])
    assert on_leader.call("join-group", {"group": "g"})["ok"]
    bob = Client(follower.url, "bob", transports=["polling"])
    # A first join from the standby: the leader makes bob a member, the standby replays.
    joined = bob.call("join-group", {"group": "g"})
    assert joined["ok"] and "bob" in joined["members"], joined
    assert on_leader.wait_for("user-joined", where=lambda name: name == "bob")
    sent = bob.call("send-group-message", {"group": "g", "message": "from the standby", "created": 1, "client_id": "b1"})
    assert sent["ok"], sent
    # Everyone sees it, with the leader's id; a resend with the client id gets the same id.
    assert [m["id"] for m in on_leader.wait_for("send-group-message")] == [sent["id"]]
    assert [m["id"] for m in bob.wait_for("send-group-message")] == [sent["id"]]
    again = bob.call("send-group-message", {"group": "g", "message": "from the standby", "created": 1, "client_id": "b1"})
    assert again == sent
    created = bob.call("create-group", {"group": "bobs", "private": True})
    assert created["ok"] and created["group"] == "bobs", created
    invited = bob.call("invite", {"group": "bobs", "username": "alice"})
    assert invited["ok"], invited
    refused = bob.call("invite", {"group": "g", "username": "carol"})  # a public room: the leader's rules apply
    assert refused["ok"] is False and refused["error"]["code"] == "not_private", refused
    left = bob.call("leave-group", {"group": "g"})
    assert left["ok"], left
    assert on_leader.wait_for("user-left", where=lambda name: name == "bob")
    on_leader.close()
    bob.close()
    rooms = run(chatlog, "rooms", "--journal", str(tmp_path / "leader"), "--format", "json")
    room = {json.loads(line)["room"]: json.loads(line) for line in rooms.stdout.splitlines()}
    assert room["bobs"]["owner"] == "bob" and room["bobs"]["invited"] == ["alice"]
    assert "bob" not in room["g"]["members"]


def test_beyond_16384_events_in_flight_a_connection_waits_for_its_sends(chatlog, tmp_path, secret, servers):
    # A member's room, made while commits were local; then the same journal with
    # --sync-replicas 1 and no standby: nothing commits, so sends stay in flight.
    plain = servers(leader(chatlog, tmp_path / "leader", secret))
    send(plain.url, 1)
    assert plain.stop() == 0
    lead = servers(leader(chatlog, tmp_path / "leader", secret, "--sync-replicas", "1", "--sync-timeout", "30s"))
    from chatserver import RawSocket
    raw = RawSocket(lead.url, {"username": "alice"})
    try:
        assert raw.call("join-group", {"group": "g"})["ok"]  # a member: nothing to commit
        # 16,384 sends go in flight and the connection reads on: members is answered at once.
        for n in range(16_384):
            raw.ws.send(f"42{100_000 + n}" + json.dumps(["send-group-message", {"group": "g", "message": "x", "created": n}]))
        # "At once": well before the 30 s sync timeout that a waiting connection would meet
        # (the bound allows a debug build on a busy two-core machine: it took 3.2 s once).
        started = time.time()
        members = raw.call("members", {"group": "g"})
        assert members["ok"] and time.time() - started < 10, members
        # One more send: over the bound, it waits for its commit, and so does what follows it on
        # this connection: members is not answered (until the sync timeout fails them all,
        # which this test does not wait for).
        raw.ws.send("42" + json.dumps(["send-group-message", {"group": "g", "message": "over", "created": 0}]))
        raw.ws.send("42999999" + json.dumps(["members", {"group": "g"}]))
        import websocket
        raw.ws.settimeout(0.25)
        answered, deadline = False, time.time() + 3
        while time.time() < deadline and not answered:
            try:
                frame = raw.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if frame == "2":
                raw.ws.send("3")
            answered = frame.startswith("43999999")
        assert not answered, "members was answered: the connection did not wait"
    finally:
        raw.close()


def test_the_http_api_on_a_standby_forwards_writes_and_reads_them_back(chatlog, tmp_path, secret, servers):
    import requests
    lead = servers(leader(chatlog, tmp_path / "leader", secret))
    follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret))
    as_bot = {"X-Chatlog-User": "bot"}
    # A write on the standby is decided by the leader and answered once the standby has it:
    # the room it returns is the standby's own view, and reads there see the message at once.
    created = requests.post(f"{follower.url}/api/rooms", json={"group": "ops"}, headers=as_bot, timeout=10)
    assert created.status_code == 201 and created.json()["owner"] == "bot", created.text
    posted = requests.post(f"{follower.url}/api/rooms/ops/messages", json={"message": "deployed", "client_id": "d1"},
                           headers=as_bot, timeout=10)
    assert posted.status_code == 201, posted.text
    on_standby = requests.get(f"{follower.url}/api/rooms/ops/messages", headers=as_bot, timeout=10).json()["messages"]
    on_leader = requests.get(f"{lead.url}/api/rooms/ops/messages", headers=as_bot, timeout=10).json()["messages"]
    assert [m["id"] for m in on_standby] == [m["id"] for m in on_leader] == [posted.json()["id"]]
    again = requests.post(f"{follower.url}/api/rooms/ops/messages", json={"message": "deployed", "client_id": "d1"},
                          headers=as_bot, timeout=10)
    assert again.status_code == 201 and again.json()["id"] == posted.json()["id"]
    # The leader's rules, the API's statuses.
    refused = requests.post(f"{follower.url}/api/rooms", json={"group": "ops"}, headers=as_bot, timeout=10)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "room_exists"
