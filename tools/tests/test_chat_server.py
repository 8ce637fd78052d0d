"""`chatlog serve` with the real python-socketio client: the tutorial's classic events and the
extensions, private rooms from outside, idempotent sends, resume without gaps (also across
restarts and under concurrent sends), identity, limits, health, CORS and shutdown."""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import socketio

from chatserver import Client, Server
from conftest import run

TRANSPORTS = [None, ["websocket"]]  # default (polling, then upgrade) and websocket-only
TRANSPORT_IDS = ["default", "websocket-only"]


@pytest.fixture()
def server(chatlog, journal):
    server = Server(chatlog, journal).start()
    yield server
    if server.process.poll() is None:
        server.stop()


@pytest.fixture()
def clients():
    made = []

    def make(*args, **kwargs):
        client = Client(*args, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.mark.parametrize("transports", TRANSPORTS, ids=TRANSPORT_IDS)
def test_the_tutorials_events_work_unchanged(server, clients, transports):
    alice = clients(server.url, transports=transports)
    bob = clients(server.url, transports=transports)
    # The tutorial binds the username with the first join-group.
    joined = alice.call("join-group", {"group": "general", "username": "alice"})
    assert joined["ok"] and joined["group"] == "general" and joined["members"] == ["alice"]
    assert bob.call("join-group", {"group": "general", "username": "bob"})["members"] == ["alice", "bob"]
    assert alice.wait_for("user-joined", where=lambda u: u == "bob") == ["bob"]

    ack = alice.call("send-group-message", {"group": "general", "message": "hello", "created": 1626242156868,
                                            "username": "alice"})
    assert ack["ok"] and isinstance(ack["id"], int)
    expected = {"group": "general", "message": "hello", "username": "alice", "created": 1626242156868, "id": ack["id"]}
    # The room, the sender included, receives the message with its id (the journal offset).
    assert bob.wait_for("send-group-message") == [expected]
    assert alice.wait_for("send-group-message") == [expected]

    alice.emit("user-typing", {"group": "general", "username": "alice"})
    assert bob.wait_for("user-typing") == ["alice"]

    left = bob.call("leave-group", {"group": "general", "username": "bob"})
    assert left == {"ok": True, "group": "general"}
    assert alice.wait_for("user-left") == ["bob"]
    # bob's socket no longer receives the room.
    alice.call("send-group-message", {"group": "general", "message": "after", "created": 1})
    alice.wait_for("send-group-message", 2)
    time.sleep(0.2)
    assert len(bob.received("send-group-message")) == 1


def test_created_is_echoed_as_the_client_sent_it(chatlog, journal, server, clients):
    from conftest import run
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    sent = ["2021-07-14T05:55:56.868Z", 1700000000123, "2021-07-14T07:55:56+02:00"]
    ids = [alice.call("send-group-message", {"group": "g", "message": "m", "created": created})["id"] for created in sent]
    alice.wait_for("send-group-message", 3)
    # A number stays the same number; an ISO-8601 string stays the same string (same instant, same form).
    assert [m["created"] for m in alice.received("send-group-message")] == sent
    history = alice.call("history", {"group": "g"})["messages"]
    assert [m["created"] for m in history] == sent and [m["id"] for m in history] == ids
    assert alice.call("send-group-message", {"group": "g", "message": "m", "created": "tomorrow"})["error"]["code"] == "invalid_payload"
    # The export carries both the instant and the form.
    exported = [json.loads(line) for line in run(chatlog, "journal", "export", "--journal", str(journal)).stdout.splitlines()]
    messages = [e for e in exported if e["type"] == "message_sent"]
    assert [e.get("client_created_text") for e in messages] == [sent[0], None, sent[2]]
    assert messages[0]["client_created_ms"] == 1626242156868 and messages[2]["client_created_ms"] == 1626242156000


def test_private_rooms_invitations_edits_and_deletes(server, clients):
    alice = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    carol = clients(server.url, "carol")
    assert alice.call("create-group", {"group": "secret", "private": True, "name": "Secret"}) == {"ok": True, "group": "secret"}
    assert alice.call("join-group", {"group": "secret"})["members"] == ["alice"]
    refused = bob.call("join-group", {"group": "secret"})
    assert refused["ok"] is False and refused["error"]["code"] == "not_invited"

    assert alice.call("invite", {"group": "secret", "username": "bob"}) == {"ok": True}
    assert alice.wait_for("member-invited") == [{"group": "secret", "username": "bob", "by": "alice"}]
    assert bob.call("join-group", {"group": "secret"})["members"] == ["alice", "bob"]
    assert alice.call("invite", {"group": "secret", "username": "carol"}) == {"ok": True}
    assert alice.call("revoke-invite", {"group": "secret", "username": "carol"}) == {"ok": True}
    assert carol.call("join-group", {"group": "secret"})["error"]["code"] == "not_invited"

    sent = bob.call("send-group-message", {"group": "secret", "message": "tpyo", "created": 5, "client_id": "b1"})
    assert bob.call("edit-message", {"group": "secret", "id": sent["id"], "message": "typo"}) == {"ok": True}
    edited = alice.wait_for("message-edited")[0]
    assert edited["id"] == sent["id"] and edited["message"] == "typo" and edited["group"] == "secret"
    assert alice.call("edit-message", {"group": "secret", "id": sent["id"], "message": "x"})["error"]["code"] == "not_author"
    second = bob.call("send-group-message", {"group": "secret", "message": "gone soon", "created": 6})
    # The owner may delete anyone's message.
    assert alice.call("delete-message", {"group": "secret", "id": second["id"]}) == {"ok": True}
    assert bob.wait_for("message-deleted")[0] == {"group": "secret", "id": second["id"], "username": "alice"}

    history = alice.call("history", {"group": "secret"})["messages"]
    assert [(m["id"], m["message"], m.get("edited"), m.get("deleted")) for m in history] == [
        (sent["id"], "typo", True, None), (second["id"], None, None, True)]
    assert history[0]["client_id"] == "b1" and "client_id" not in history[1]

    members = alice.call("members", {"group": "secret"})
    assert members["members"] == ["alice", "bob"] and members["online"] == ["alice", "bob"]
    assert members["owner"] == "alice" and members["private"] is True and members["invited"] == []
    groups = bob.call("my-groups")["groups"]
    assert [(g["group"], g["name"], g["private"], g["owner"]) for g in groups] == [("secret", "Secret", True, "alice")]

    # Removal: bob's sockets leave the room at once and are told; the room is told too.
    assert alice.call("remove-member", {"group": "secret", "username": "bob"}) == {"ok": True}
    assert bob.wait_for("removed-from-group") == [{"group": "secret", "by": "alice"}]
    assert alice.wait_for("member-removed") == [{"group": "secret", "username": "bob", "by": "alice"}]
    alice.call("send-group-message", {"group": "secret", "message": "bob cannot see this", "created": 7})
    time.sleep(0.2)
    assert "bob cannot see this" not in [m["message"] for m in bob.received("send-group-message")]
    assert bob.call("history", {"group": "secret"})["error"]["code"] == "not_member"


def test_a_private_room_is_closed_on_every_route_from_outside(server, clients):
    alice = clients(server.url, "alice")
    mallory = clients(server.url, "mallory", transports=["websocket"])
    alice.call("create-group", {"group": "vault", "private": True})
    alice.call("join-group", {"group": "vault"})
    sent = alice.call("send-group-message", {"group": "vault", "message": "the code is 1234", "created": 1})
    outside = {
        "join-group": {"group": "vault"},
        "send-group-message": {"group": "vault", "message": "hi", "created": 1},
        "history": {"group": "vault"},
        "members": {"group": "vault"},
        "invite": {"group": "vault", "username": "mallory"},
        "revoke-invite": {"group": "vault", "username": "alice"},
        "remove-member": {"group": "vault", "username": "alice"},
        "edit-message": {"group": "vault", "id": sent["id"], "message": "mine"},
        "delete-message": {"group": "vault", "id": sent["id"]},
        "leave-group": {"group": "vault"},
        "user-typing": {"group": "vault"},
    }
    for event, payload in outside.items():
        answer = mallory.call(event, payload)
        assert answer["ok"] is False, (event, answer)
        assert answer["error"]["code"] in {"not_invited", "not_member", "not_owner", "not_author"}, (event, answer)
    # Resuming with `after` is a join too.
    assert mallory.call("join-group", {"group": "vault", "after": 0})["error"]["code"] == "not_invited"
    assert mallory.call("my-groups")["groups"] == []
    alice.call("send-group-message", {"group": "vault", "message": "still secret", "created": 2})
    alice.emit("user-typing", {"group": "vault"})
    time.sleep(0.3)
    assert mallory.received() == []
    assert "the code is 1234" not in json.dumps(mallory.received())


def test_a_resend_with_the_same_client_id_is_acknowledged_again_and_broadcast_once(server, clients):
    alice = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    alice.call("join-group", {"group": "g"})
    bob.call("join-group", {"group": "g"})
    first = alice.call("send-group-message", {"group": "g", "message": "once", "created": 1, "client_id": "m-1"})
    again = alice.call("send-group-message", {"group": "g", "message": "once", "created": 1, "client_id": "m-1"})
    assert first == again and first["ok"]
    bob.call("send-group-message", {"group": "g", "message": "marker", "created": 2})
    bob.wait_for("send-group-message", 2)
    assert [m["message"] for m in bob.received("send-group-message")] == ["once", "marker"]
    assert bob.received("send-group-message")[0]["client_id"] == "m-1"
    too_long = alice.call("send-group-message", {"group": "g", "message": "x", "created": 1, "client_id": "c" * 65})
    assert too_long["error"]["code"] == "invalid_client_message_id"


def test_a_client_id_with_the_servers_prefix_is_refused_and_never_echoed(server, clients):
    # FORMAT.md §5: "chatlog:" starts the ids the server makes up for sends without one.
    alice = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    alice.call("join-group", {"group": "g"})
    bob.call("join-group", {"group": "g"})
    claimed = alice.call("send-group-message", {"group": "g", "message": "mine", "created": 1, "client_id": "chatlog:x"})
    assert claimed["error"]["code"] == "invalid_payload" and "chatlog:" in claimed["error"]["message"]
    # Without an id the message is journaled under a made-up one, which clients are never shown.
    plain = alice.call("send-group-message", {"group": "g", "message": "plain", "created": 2})
    assert plain["ok"] and "client_id" not in plain
    bob.wait_for("send-group-message", 1)
    assert [m["message"] for m in bob.received("send-group-message")] == ["plain"]
    assert "client_id" not in bob.received("send-group-message")[0]
    page = alice.call("history", {"group": "g"})
    assert [m["message"] for m in page["messages"]] == ["plain"] and "client_id" not in page["messages"][0]


def test_bad_payloads_get_invalid_payload_and_the_connection_goes_on(server, clients):
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    cases = [
        ("send-group-message", {"group": "g"}),
        ("send-group-message", {"group": "g", "message": 42, "created": 1}),
        ("send-group-message", "just a string"),
        ("join-group", {"group": ""}),
        ("join-group", {"group": "x" * 129}),
        ("join-group", {"group": "g", "after": -1}),
        ("history", {"group": "g", "limit": 1000}),
        ("history", {"group": "g", "before": "5"}),
        ("edit-message", {"group": "g", "id": "seven", "message": "x"}),
        ("no-such-event", {}),
    ]
    for event, payload in cases:
        answer = alice.call(event, payload)
        assert answer["ok"] is False and answer["error"]["code"] == "invalid_payload", (event, payload, answer)
    # Without an ack, a refusal is an `error` event to that socket.
    alice.emit("send-group-message", {"group": "g", "message": 1})
    error = alice.wait_for("error")[0]
    assert error["event"] == "send-group-message" and error["code"] == "invalid_payload"
    oversize = alice.call("send-group-message", {"group": "g", "message": "x" * 5000, "created": 1})
    assert oversize["error"]["code"] == "invalid_text"
    assert alice.call("send-group-message", {"group": "g", "message": "still here", "created": 1})["ok"]


def test_dev_mode_binds_the_first_username_and_refuses_another(server, clients):
    anonymous = clients(server.url)
    assert anonymous.call("send-group-message", {"group": "g", "message": "x", "created": 1})["error"]["code"] == "unauthorized"
    assert anonymous.call("join-group", {"group": "g", "username": "dora"})["ok"]
    other = anonymous.call("send-group-message", {"group": "g", "message": "x", "created": 1, "username": "eve"})
    assert other["error"]["code"] == "unauthorized"
    assert anonymous.call("send-group-message", {"group": "g", "message": "x", "created": 1, "username": "dora"})["ok"]


def test_resume_with_after_replays_exactly_what_was_missed_then_goes_live(server, clients):
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    for n in range(5):
        alice.call("send-group-message", {"group": "g", "message": f"m{n}", "created": n})
    bob = clients(server.url, "bob")
    bob.call("join-group", {"group": "g"})
    ids = [alice.call("send-group-message", {"group": "g", "message": f"seen{n}", "created": n})["id"] for n in range(3)]
    bob.wait_for("send-group-message", 3)
    last = bob.received("send-group-message")[-1]["id"]
    assert last == ids[-1]
    bob.close()
    missed = []
    for n in range(20):
        missed.append(alice.call("send-group-message", {"group": "g", "message": f"missed{n}", "created": n})["id"])
        if n == 10:  # another room's events are not replayed
            alice.call("join-group", {"group": "elsewhere"})
            alice.call("send-group-message", {"group": "elsewhere", "message": "x", "created": 1})
    back = clients(server.url, "bob", transports=["websocket"])
    joined = back.call("join-group", {"group": "g", "after": last})
    assert joined["ok"] and joined["last_id"] >= missed[-1]
    replayed = [m["id"] for m in back.received("send-group-message")]
    assert replayed == missed  # in order, nothing before `after`, nothing twice
    live = alice.call("send-group-message", {"group": "g", "message": "live", "created": 1})["id"]
    back.wait_for("send-group-message", 21)
    assert [m["id"] for m in back.received("send-group-message")] == missed + [live]


def test_a_resume_from_past_this_nodes_end_sends_nothing_the_client_already_read(server, clients):
    """A client that read a room on a node further ahead (a leader, before a failover to a standby
    that is behind) resumes here with an `after` past this node's end: what this node applies
    below it later was already read, and is not sent again (it once was, as duplicates)."""
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    first = [alice.call("send-group-message", {"group": "g", "message": f"m{n}"})["id"] for n in range(3)]
    bob = clients(server.url, "bob", transports=["websocket"])
    ahead = first[-1] + 5
    assert bob.call("join-group", {"group": "g", "after": ahead})["ok"]
    later = [alice.call("send-group-message", {"group": "g", "message": f"later{n}"})["id"] for n in range(10)]
    expected = [i for i in later if i > ahead]
    assert expected and len(expected) < len(later)
    bob.wait_for("send-group-message", len(expected))
    time.sleep(0.2)
    assert [m["id"] for m in bob.received("send-group-message")] == expected


def test_the_splice_of_replay_and_live_has_no_gap_and_no_duplicate_under_concurrent_sends(server, clients):
    senders = [clients(server.url, f"sender{n}", transports=["websocket"]) for n in range(3)]
    for sender in senders:
        sender.call("join-group", {"group": "busy"})
    first = senders[0].call("send-group-message", {"group": "busy", "message": "start", "created": 0})["id"]
    stop = threading.Event()
    sent = {n: [] for n in range(len(senders))}

    def send(n):
        count = 0
        while not stop.is_set():
            ack = senders[n].call("send-group-message", {"group": "busy", "message": f"{n}-{count}", "created": count})
            sent[n].append(ack["id"])
            count += 1

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(senders))]
    for thread in threads:
        thread.start()
    resumed = []
    try:
        for attempt in range(6):
            time.sleep(0.15)
            reader = clients(server.url, f"reader{attempt}", transports=None if attempt % 2 else ["websocket"])
            reader.call("join-group", {"group": "busy", "after": first})
            resumed.append(reader)
    finally:
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
    final = senders[0].call("send-group-message", {"group": "busy", "message": "end", "created": 0})["id"]
    everything = sorted([i for ids in sent.values() for i in ids] + [final])
    assert sum(len(ids) for ids in sent.values()) > 30, "the senders must have overlapped the resumes"
    for reader in resumed:
        reader.wait_for("send-group-message", where=lambda m: m["id"] == final)
        got = [m["id"] for m in reader.received("send-group-message")]
        assert got == everything, f"gap or duplicate: {set(everything) ^ set(got)}"


def test_a_client_resumes_after_the_server_restarts(chatlog, journal, clients):
    server = Server(chatlog, journal).start()
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    before = [alice.call("send-group-message", {"group": "g", "message": f"b{n}", "created": n})["id"] for n in range(3)]
    alice.close()
    assert server.stop() == 0
    server = Server(chatlog, journal).start()
    try:
        bob = clients(server.url, "bob")
        bob.call("join-group", {"group": "g"})
        after = [bob.call("send-group-message", {"group": "g", "message": f"a{n}", "created": n})["id"] for n in range(3)]
        assert after[0] > before[-1]
        back = clients(server.url, "alice")
        back.call("join-group", {"group": "g", "after": before[-1]})
        assert [m["id"] for m in back.received("send-group-message")] == after
        history = back.call("history", {"group": "g"})["messages"]
        assert [m["id"] for m in history] == before + after
    finally:
        server.stop()


def test_sigterm_answers_commands_in_flight_disconnects_clients_and_exits_zero(chatlog, journal, clients):
    server = Server(chatlog, journal).start()
    alice = clients(server.url, "alice", transports=["websocket"])
    polling = clients(server.url, "bob")
    alice.call("join-group", {"group": "g"})
    disconnected = threading.Event()
    alice.sio.on("disconnect", lambda *args: disconnected.set())
    acks = []
    done = threading.Event()

    def send_many():
        for n in range(200):
            try:
                acks.append(alice.call("send-group-message", {"group": "g", "message": f"m{n}", "created": n}, timeout=5))
            except Exception as error:  # the server went away mid-call
                acks.append(error)
                break
        done.set()

    thread = threading.Thread(target=send_many)
    thread.start()
    time.sleep(0.3)
    started = time.time()
    code = server.stop(signal.SIGTERM)
    elapsed = time.time() - started
    thread.join(10)
    assert code == 0, server.log()
    assert elapsed < 5, f"shutdown took {elapsed:.1f}s"
    assert disconnected.wait(5), "the client was not disconnected"
    log = server.log()
    assert "shutting down" in log and "room-state snapshot written" in log and "journal closed" in log and "chatlog stopped" in log
    assert (journal / "projections" / "room-state.snapshot").exists()
    # Every acknowledged send is in the journal; no refused one is.
    acked = [a["id"] for a in acks if isinstance(a, dict) and a.get("ok")]
    server = Server(chatlog, journal).start()
    try:
        reader = clients(server.url, "reader")
        reader.call("join-group", {"group": "g"})
        stored = [m["id"] for m in reader.call("history", {"group": "g", "limit": 200})["messages"]]
        assert acked and stored[:len(acked)] == acked
    finally:
        server.stop()


def test_a_connection_that_never_finishes_its_request_does_not_hold_the_shutdown(chatlog, journal):
    """NIO's upgrade handler holds a connection until its first request is complete; a client
    that never completes one (a slow or hostile one) once kept SIGTERM from ever finishing."""
    import socket
    server = Server(chatlog, journal).start()
    idle = socket.create_connection(("127.0.0.1", server.port))
    partial = socket.create_connection(("127.0.0.1", server.port))
    try:
        partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: chatlog\r\n")  # the head never ends
        time.sleep(0.2)
        started = time.time()
        assert server.stop(timeout=10) == 0, server.log()
        assert time.time() - started < 3
    finally:
        idle.close()
        partial.close()


def test_a_connection_that_sends_no_request_is_closed_after_the_first_request_timeout(chatlog, journal):
    import socket
    server = Server(chatlog, journal, "--first-request-timeout-ms", "500").start()
    try:
        silent = socket.create_connection(("127.0.0.1", server.port))
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        for connection in (silent, slow):
            connection.settimeout(5)
            started = time.time()
            assert connection.recv(1024) == b"", "the server closes it"
            assert time.time() - started < 3
            connection.close()
        # One that sends its request in time is served.
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


def test_sigint_stops_the_server_cleanly_as_ctrl_c_in_make_run_does(chatlog, journal, clients):
    server = Server(chatlog, journal).start()
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    sent = alice.call("send-group-message", {"group": "g", "message": "before ctrl-c", "created": 1})
    assert server.stop(signal.SIGINT) == 0, server.log()
    assert "journal closed" in server.log()
    server = Server(chatlog, journal).start()
    try:
        reader = clients(server.url, "reader")
        assert [m["id"] for m in reader.call("history", {"group": "g"})["messages"]] == [sent["id"]]
    finally:
        server.stop()


def test_a_second_server_on_the_same_journal_fails_naming_the_first(chatlog, journal, server):
    second = Server(chatlog, journal)
    command = [chatlog, "serve", "--journal", str(journal), "--port", "0", "--dev"]
    import subprocess
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(f"chatlog serve: the journal {journal} is in use by process {server.process.pid}"), result.stderr


def test_healthz_reports_the_role_and_offset(server, clients):
    response = requests.get(server.url + "/healthz", timeout=5)
    assert response.status_code == 200 and response.json() == {"status": "ok", "role": "leader", "offset": 0}
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    alice.call("send-group-message", {"group": "g", "message": "x", "created": 1})
    assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "ok", "role": "leader", "offset": 2}
    # A load balancer's check reads the status alone: 200 only on a node of that role.
    assert requests.get(server.url + "/healthz/leader", timeout=5).status_code == 200
    standby_check = requests.get(server.url + "/healthz/standby", timeout=5)
    assert standby_check.status_code == 503 and standby_check.json()["reason"] == "this node is a leader, not a standby"


def test_head_answers_as_get_without_a_body(server):
    for path in ("/", "/healthz", "/healthz/leader", "/metrics", "/openapi.yaml"):
        get = requests.get(server.url + path, timeout=5)
        head = requests.head(server.url + path, timeout=5)
        assert head.status_code == get.status_code == 200, path
        assert head.headers["Content-Type"] == get.headers["Content-Type"], path
        assert head.content == b"", path


def test_tokens_identify_users_and_bad_ones_are_refused(chatlog, journal, clients):
    import subprocess
    server = Server(chatlog, journal, dev=False).start()
    try:
        secret = journal / "auth.secret"
        assert secret.exists() and (secret.stat().st_mode & 0o777) == 0o600
        assert secret.read_text().strip() not in server.log()
        token = subprocess.run([chatlog, "token", "issue", "alice", "--journal", str(journal)],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        alice = clients(server.url, token=token)
        # Outside --dev, usernames in payloads are ignored: the token says who speaks.
        assert alice.call("join-group", {"group": "g", "username": "mallory"})["members"] == ["alice"]
        alice.call("send-group-message", {"group": "g", "message": "hi", "created": 1, "username": "mallory"})
        assert alice.wait_for("send-group-message")[0]["username"] == "alice"

        def refusal(auth):
            refused = socketio.Client(reconnection=False)
            errors = []
            refused.on("connect_error", lambda data: errors.append(data))
            with pytest.raises(socketio.exceptions.ConnectionError):
                refused.connect(server.url, auth=auth, wait_timeout=5)
            assert len(errors) == 1 and errors[0]["data"] == {"code": "unauthorized"}, errors
            return errors[0]["message"]

        for auth in [None, {"token": "not.a.jwt"}, {"username": "alice"}, {"token": token[:-2] + "xx"}]:
            assert "token" in refusal(auth)
        short = subprocess.run([chatlog, "token", "issue", "bob", "--ttl", "1s", "--journal", str(journal)],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        time.sleep(2.1)
        assert "expired" in refusal({"token": short})
    finally:
        server.stop()


def test_typing_is_rate_limited_ephemeral_and_only_from_inside_the_room(server, clients):
    alice = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    alice.call("join-group", {"group": "g"})
    bob.call("join-group", {"group": "g"})
    for _ in range(20):
        alice.emit("user-typing", {"group": "g"})
    time.sleep(0.4)
    assert 1 <= len(bob.received("user-typing")) <= 3
    assert requests.get(server.url + "/healthz", timeout=5).json()["offset"] == 2  # nothing journaled


def test_the_tutorials_notices_are_kept_and_each_is_followed_by_one_naming_its_room(server, clients):
    # Alice is in two rooms: the tutorial's user-joined / user-typing / user-left cannot say
    # which one; the companion that follows each at once does.
    alice = clients(server.url, "alice")
    for group in ("g1", "g2"):
        assert alice.call("join-group", {"group": group})["ok"]
    bob = clients(server.url, "bob")
    assert bob.call("join-group", {"group": "g2"})["ok"]
    bob.emit("user-typing", {"group": "g2"})
    assert bob.call("leave-group", {"group": "g2"})["ok"]
    alice.wait_for("member-left")
    notices = [(name, data) for name, data in alice.events
               if name in ("user-joined", "member-joined", "user-typing", "typing", "user-left", "member-left")]
    assert notices == [
        ("user-joined", "bob"), ("member-joined", {"group": "g2", "username": "bob"}),
        ("user-typing", "bob"), ("typing", {"group": "g2", "username": "bob"}),
        ("user-left", "bob"), ("member-left", {"group": "g2", "username": "bob"}),
    ], notices
    # A resume's replay carries them too, in the same order.
    carol = clients(server.url, "carol")
    joined = carol.call("join-group", {"group": "g2", "after": 0})
    assert joined["ok"]
    replayed = [(name, data) for name, data in carol.events if name in ("user-joined", "member-joined", "user-left", "member-left")]
    assert replayed[:4] == [("user-joined", "alice"), ("member-joined", {"group": "g2", "username": "alice"}),
                            ("user-joined", "bob"), ("member-joined", {"group": "g2", "username": "bob"})], replayed
    assert ("member-left", {"group": "g2", "username": "bob"}) in replayed


def test_clients_beyond_their_event_rate_are_refused_with_rate_limited(chatlog, journal, clients):
    server = Server(chatlog, journal, "--events-per-second", "0.5", "--events-burst", "10").start()
    try:
        alice = clients(server.url, "alice")
        answers = [alice.call("members", {"group": "nowhere"}) for _ in range(15)]
        codes = [a["error"]["code"] for a in answers]
        assert codes.count("rate_limited") >= 4 and codes[:10] == ["room_not_found"] * 10
    finally:
        server.stop()


def test_presence_online_and_offline_per_room(server, clients):
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    bob = clients(server.url, "bob")
    bob.call("join-group", {"group": "g"})
    assert alice.wait_for("user-online", where=lambda p: p["username"] == "bob")
    second = clients(server.url, "bob")
    second.call("join-group", {"group": "g"})
    bob.close()
    time.sleep(0.3)
    assert not alice.received("user-offline")  # bob still has a socket in the room
    second.close()
    assert alice.wait_for("user-offline") == [{"group": "g", "username": "bob"}]


def test_cors_headers_follow_the_configuration(chatlog, journal):
    handshake = "/socket.io/?EIO=4&transport=polling"
    dev = Server(chatlog, journal).start()
    try:
        response = requests.get(dev.url + handshake, headers={"Origin": "http://elsewhere.test"}, timeout=5)
        assert response.headers.get("Access-Control-Allow-Origin") == "http://elsewhere.test"
    finally:
        dev.stop()
    plain = Server(chatlog, journal, dev=False).start()
    try:
        response = requests.get(plain.url + handshake, headers={"Origin": "http://elsewhere.test"}, timeout=5)
        assert "Access-Control-Allow-Origin" not in response.headers
    finally:
        plain.stop()
    listed = Server(chatlog, journal, "--cors-origin", "http://app.test", dev=False).start()
    try:
        allowed = requests.get(listed.url + handshake, headers={"Origin": "http://app.test"}, timeout=5)
        other = requests.get(listed.url + handshake, headers={"Origin": "http://elsewhere.test"}, timeout=5)
        assert allowed.headers.get("Access-Control-Allow-Origin") == "http://app.test"
        assert "Access-Control-Allow-Origin" not in other.headers
    finally:
        listed.stop()


def test_connection_state_recovery_gives_back_rooms_and_missed_events_also_after_a_restart(chatlog, journal):
    from chatserver import RawSocket
    server = Server(chatlog, journal, "--recovery").start()
    try:
        first = RawSocket(server.url, {"username": "alice"})
        pid = first.connect_reply["pid"]
        assert pid and first.call("join-group", {"group": "g"})["ok"]
        sent = first.call("send-group-message", {"group": "g", "message": "one", "created": 1})
        online, event = first.events(2)
        assert online == ["user-online", {"group": "g", "username": "alice"}, "0"]  # ephemeral: the last offset applied
        # With recovery, every event a room receives carries its offset as a last, string argument.
        assert event[0] == "send-group-message" and event[1]["id"] == sent["id"] and event[2] == str(sent["id"])
        first.close()

        other = Client(server.url, "bob")
        other.call("join-group", {"group": "g"})
        missed = [other.call("send-group-message", {"group": "g", "message": f"m{n}", "created": n})["id"] for n in range(3)]
        other.close()
        assert server.stop() == 0
        server = Server(chatlog, journal, "--recovery").start()

        back = RawSocket(server.url, {"username": "alice", "pid": pid, "offset": event[2]})
        assert back.connect_reply["pid"] == pid  # the same pid: recovered
        replayed = [e for e in back.events(5) if e[0] == "send-group-message"][:3]
        assert [e[1]["id"] for e in replayed] == missed and [e[2] for e in replayed] == [str(i) for i in missed]
        back.close()

        # Recovery gives back the rooms of the user the connection identifies (its memberships),
        # never more: without a user, or from an offset no longer retained, it is a new session.
        anonymous = RawSocket(server.url, {"pid": pid, "offset": event[2]})
        assert anonymous.connect_reply["pid"] != pid
        anonymous.close()
        future = RawSocket(server.url, {"username": "alice", "pid": pid, "offset": "999999"})
        assert future.connect_reply["pid"] != pid
        future.close()
    finally:
        if server.process.poll() is None:
            server.stop()


def test_a_client_that_stops_reading_is_disconnected_and_never_slows_its_room(chatlog, journal, clients):
    import socket as sockets
    import websocket
    server = Server(chatlog, journal, "--events-per-second", "100000", "--events-burst", "100000").start()
    try:
        # A client that joins, then never reads again, with a tiny receive buffer.
        slow = websocket.create_connection(server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
                                           timeout=10, sockopt=[(sockets.SOL_SOCKET, sockets.SO_RCVBUF, 4096)])
        assert slow.recv().startswith("0")
        slow.send('40{"username":"sloth"}')
        assert slow.recv().startswith("40")
        slow.send('420["join-group",{"group":"flood"}]')
        reader = clients(server.url, "reader", transports=["websocket"])
        reader.call("join-group", {"group": "flood"})
        sender = clients(server.url, "sender", transports=["websocket"])
        sender.call("join-group", {"group": "flood"})
        text = "x" * 4000
        count = 2500
        for n in range(count):
            payload = {"group": "flood", "message": text, "created": n, "client_id": f"f{n}"}
            # Bursts of 100 then a round trip: the reader (a Python client) keeps up; the one
            # that does not read falls behind by the whole flood.
            if n % 100 == 99:
                sender.call("send-group-message", payload, timeout=30)
            else:
                sender.emit("send-group-message", payload)
        last = sender.call("send-group-message", {"group": "flood", "message": "done", "created": 0}, timeout=60)
        got = reader.wait_for("send-group-message", count + 1, timeout=60)
        assert [m["id"] for m in got] == sorted({m["id"] for m in got}) and got[-1]["id"] == last["id"]
        assert "socket.io client too slow; closing" in server.log()
        scrape = requests.get(server.url + "/metrics", timeout=5).text
        assert "socketio_slow_clients_disconnected_total 1\n" in scrape, scrape
        # Its connection closes (after the close handshake's timeout): it goes offline.
        deadline = time.time() + 10
        while "sloth" in reader.call("members", {"group": "flood"})["online"] and time.time() < deadline:
            time.sleep(0.2)
        assert "sloth" not in reader.call("members", {"group": "flood"})["online"]
    finally:
        server.stop()


def test_a_failing_disk_stops_writes_refuses_commands_and_turns_health_red(chatlog, journal, clients):
    # The journal's writes fail after 32 KiB, as a failing disk's would (a hidden fault-injection option).
    server = Server(chatlog, journal, "--events-per-second", "100000", "--events-burst", "100000",
                    "--fail-journal-writes-after-bytes", str(32 << 10)).start()
    try:
        alice = clients(server.url, "alice", transports=["websocket"])
        alice.call("join-group", {"group": "g"})
        acked, refused = [], []
        for n in range(300):
            text = os.urandom(600).hex()  # incompressible: the journal grows by about 1.2 KB a message
            ack = alice.call("send-group-message", {"group": "g", "message": text, "created": n})
            (acked if ack["ok"] else refused).append(ack)
        assert acked and refused, "the fault must have been reached"
        assert all(a["error"]["code"] == "unavailable" for a in refused)
        health = requests.get(server.url + "/healthz", timeout=5)
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        # Nothing refused was broadcast; everything acknowledged was.
        time.sleep(0.3)
        received = [m["id"] for m in alice.received("send-group-message")]
        assert received == [a["id"] for a in acked]
        log = server.log()
        assert "journal write failed" in log and "refusing commands" in log
        assert server.stop() == 0
        # A restart recovers from disk: every acknowledged message is there.
        server = Server(chatlog, journal).start()
        reader = clients(server.url, "reader")
        stored = [m["id"] for m in reader.call("history", {"group": "g", "after": 0, "limit": 200})["messages"]]
        assert stored[:len(acked)] == [a["id"] for a in acked]
    finally:
        if server.process.poll() is None:
            server.stop()


def test_a_failing_history_store_refuses_commands_and_turns_health_red_and_a_restart_recovers(chatlog, journal, clients):
    # History's SQLite writes fail after 10 batches (a hidden fault-injection option).
    server = Server(chatlog, journal, "--fail-history-writes-after-batches", "10").start()
    try:
        alice = clients(server.url, "alice", transports=["websocket"])
        alice.call("join-group", {"group": "g"})
        acked, refused = [], []
        # History applies what commits every 50 ms in one transaction: send until its
        # failure is seen (a few transactions in), then a few more.
        for n in range(2_000):
            ack = alice.call("send-group-message", {"group": "g", "message": f"m{n}", "created": n})
            (acked if ack["ok"] else refused).append(ack)
            if len(refused) >= 3:
                break
        assert acked and refused, "the fault must have been reached"
        assert all(a["error"]["code"] == "unavailable" and "history" in a["error"]["message"] for a in refused)
        health = requests.get(server.url + "/healthz", timeout=5)
        assert health.status_code == 503 and "history" in health.json()["reason"]
        page = alice.call("history", {"group": "g", "limit": 5})
        assert page["ok"] is False and page["error"]["code"] == "unavailable"
        assert "history writer stopped" in server.log()
        assert server.stop() == 0
        # The journal has everything acknowledged; a restart catches History up from it.
        server = Server(chatlog, journal).start()
        reader = clients(server.url, "reader")
        stored = [m["id"] for m in reader.call("history", {"group": "g", "after": 0, "limit": 200})["messages"]]
        assert stored == [a["id"] for a in acked]
    finally:
        if server.process.poll() is None:
            server.stop()


def test_a_failing_search_index_fails_searches_only_and_a_restart_indexes_everything(chatlog, journal, clients):
    # The search index's SQLite writes fail after 5 batches (a hidden fault-injection option).
    server = Server(chatlog, journal, "--fail-search-writes-after-batches", "5").start()
    try:
        alice = clients(server.url, "alice", transports=["websocket"])
        alice.call("join-group", {"group": "g"})
        sent = []
        for n in range(20):
            ack = alice.call("send-group-message", {"group": "g", "message": f"word{n} common", "created": n})
            assert ack["ok"], "the chat goes on"
            sent.append(ack["id"])
            found = alice.call("search", {"query": f"word{n}"})
            if not found["ok"]:
                break
        assert found["ok"] is False and found["error"]["code"] == "unavailable" and "search" in found["error"]["message"]
        assert alice.call("send-group-message", {"group": "g", "message": "after the failure", "created": 99})["ok"]
        assert alice.call("history", {"group": "g", "limit": 1})["messages"][0]["message"] == "after the failure"
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        assert 'chat_projection_failed{projection="search"} 1' in metrics
        assert "search writer stopped" in server.log()
        time.sleep(0.5)
        assert server.process.poll() is None and alice.call("send-group-message", {"group": "g", "message": "still", "created": 100})["ok"]
        assert server.stop() == 0
        # A restart indexes what the failed writer did not.
        server = Server(chatlog, journal).start()
        reader = clients(server.url, "alice")
        assert len(reader.call("search", {"query": "common", "limit": 50})["messages"]) == len(sent)
        assert [m["message"] for m in reader.call("search", {"query": "failure"})["messages"]] == ["after the failure"]
    finally:
        if server.process.poll() is None:
            server.stop()


def test_a_member_who_left_and_came_back_resumes_across_its_leave(server, clients):
    alice = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    alice.call("create-group", {"group": "club", "private": True})
    alice.call("join-group", {"group": "club"})
    alice.call("invite", {"group": "club", "username": "bob"})
    first = bob.call("join-group", {"group": "club"})
    bob.call("leave-group", {"group": "club"})
    missed = alice.call("send-group-message", {"group": "club", "message": "while bob was away", "created": 1})
    alice.call("invite", {"group": "club", "username": "bob"})
    # bob comes back and resumes from before his leave: he is a member again, so he gets it all.
    back = bob.call("join-group", {"group": "club", "after": first["last_id"]})
    assert back["ok"], back
    assert missed["id"] in [m["id"] for m in bob.received("send-group-message")]
    # Removed and not invited again: a resume from before the removal is refused.
    alice.call("remove-member", {"group": "club", "username": "bob"})
    carol = clients(server.url, "bob")
    refused = carol.call("join-group", {"group": "club", "after": first["last_id"]})
    assert refused["ok"] is False and refused["error"]["code"] == "not_invited"


def test_a_long_resume_over_long_polling_is_sent_in_chunks_and_arrives_whole(chatlog, journal, clients):
    # More than two replay chunks (256 events each): the replay waits for each chunk to be
    # taken by a poll before the next, within the polling buffer's 1,000 packets.
    server = Server(chatlog, journal, "--events-per-second", "100000", "--events-burst", "100000").start()
    try:
        alice = clients(server.url, "alice", transports=["websocket"])
        alice.call("join-group", {"group": "long"})
        ids = [alice.call("send-group-message", {"group": "long", "message": f"m{n}", "created": n})["id"] for n in range(600)]
        reader = clients(server.url, "reader", transports=["polling"])
        joined = reader.call("join-group", {"group": "long", "after": 0}, timeout=5)
        assert joined["ok"]
        assert [m["id"] for m in reader.received("send-group-message")] == ids
    finally:
        server.stop()


def test_a_connection_may_be_in_at_most_100_groups(server, clients):
    owners = [clients(server.url, "owner-a"), clients(server.url, "owner-b")]
    for n in range(101):  # a user may create 100 rooms: two owners make 101
        assert owners[n % 2].call("create-group", {"group": f"g{n}", "private": False})["ok"]
    member = clients(server.url, "member", transports=["websocket"])
    answers = [member.call("join-group", {"group": f"g{n}"}) for n in range(101)]
    assert all(a["ok"] for a in answers[:100])
    assert answers[100]["ok"] is False and answers[100]["error"]["code"] == "limit_exceeded"


def test_a_start_up_catch_up_logs_its_progress(chatlog, journal, clients):
    # Events the projections have not seen (no snapshot, no History): a start replays them,
    # logging its progress (every 2 s by default; here at every step).
    server = Server(chatlog, journal).start()
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    for n in range(30):
        alice.call("send-group-message", {"group": "g", "message": f"m{n}", "created": n})
    alice.close()
    assert server.stop() == 0
    for name in ("room-state.snapshot", "history.sqlite", "history.sqlite-wal", "history.sqlite-shm"):
        (journal / "projections" / name).unlink(missing_ok=True)
    again = Server(chatlog, journal, "--catch-up-progress-ms", "0").start()
    try:
        lines = [line for line in again.log().splitlines() if "catching the projections up" in line]
        assert lines, again.log()
        assert "projection.total=" in lines[-1] and "projection.percent=" in lines[-1]
        assert "projection.percent=100" in lines[-1] or len(lines) > 1
    finally:
        again.stop()


def test_the_listen_backlog_takes_a_reconnect_storm(chatlog, journal):
    """The kernel queues up to 4,096 connections (capped by net.core.somaxconn) for the
    server, where Hummingbird's default was 256: `ss` shows a listening socket's backlog."""
    server = Server(chatlog, journal).start()
    try:
        port = server.url.rsplit(":", 1)[1]
        listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
        somaxconn = int(open("/proc/sys/net/core/somaxconn").read())
        backlogs = [int(line.split()[2]) for line in listening.splitlines() if line.strip()]
        assert backlogs and all(backlog == min(4096, somaxconn) for backlog in backlogs), listening
    finally:
        server.stop()


def event_loop_threads(pid: int) -> int:
    """The threads of NIO's event loops in process `pid` (named NIO-SGLTN-GROUP-#N)."""
    names = [Path(f"/proc/{pid}/task/{task}/comm").read_text().strip() for task in os.listdir(f"/proc/{pid}/task")]
    return sum(name.startswith("NIO-SGLTN-") for name in names)


def test_the_server_runs_half_as_many_event_loops_as_cores_unless_told(chatlog, tmp_path, monkeypatch):
    cores = len(os.sched_getaffinity(0))
    for args, expected in (((), max(1, cores // 2)), (("--event-loops", "3"), 3)):
        server = Server(chatlog, tmp_path / f"journal-{len(args)}", *args).start()
        try:
            client = Client(server.url, "alice", transports=["websocket"])
            assert client.call("join-group", {"group": "g"})["ok"]
            client.close()
            assert event_loop_threads(server.process.pid) == expected, args
        finally:
            assert server.stop() == 0
    # NIO's own variable is honoured when the option is not given.
    monkeypatch.setenv("NIO_SINGLETON_GROUP_LOOP_COUNT", "2")
    server = Server(chatlog, tmp_path / "journal-nio").start()
    try:
        assert event_loop_threads(server.process.pid) == 2
    finally:
        assert server.stop() == 0
    monkeypatch.delenv("NIO_SINGLETON_GROUP_LOOP_COUNT")
    refused = run(chatlog, "serve", "--journal", str(tmp_path / "refused"), "--event-loops", "0")
    assert refused.returncode != 0 and "--event-loops must be 1 to 256" in refused.stderr, refused.stderr
