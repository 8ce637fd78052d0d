"""Crash test: clients send with acks while `chatlog serve` is killed with kill -9 at random
moments and restarted on the same journal; senders retry unacknowledged sends with the same
client id, readers resume with `after`. Every acknowledged message must be in the history
exactly once, in each sender's order, and every reader's view must have no gap and no
duplicate."""

import os
import random
import threading
import time

import requests
import socketio

from chatserver import Client, Server, page, private_room, rooms_of

ROOM = "crash"
SENDERS = 3
KILLS = int(os.environ.get("CHATLOG_CRASH_KILLS", "3"))


def connect_when_up(url, username, deadline):
    while time.time() < deadline:
        try:
            return Client(url, username, transports=["websocket"])
        except Exception:
            time.sleep(0.05)
    raise AssertionError(f"{username} could not reconnect to {url}")


def test_acknowledged_messages_survive_kill_minus_nine_exactly_once_and_resumes_have_no_gaps(chatlog, journal):
    rng = random.Random(int(os.environ.get("CHATLOG_CRASH_SEED", str(int(time.time())))))
    server = Server(chatlog, journal).start()
    port = server.port
    url = server.url
    setup = Client(url, "owner")
    setup.call("join-group", {"group": ROOM})
    setup.close()

    stop = threading.Event()
    acked = {n: [] for n in range(SENDERS)}  # (client id, message id) in send order
    views = {}
    failures = []

    def sender(n):
        client = None
        count = 0
        try:
            while not stop.is_set():
                if client is None:
                    client = connect_when_up(url, f"sender{n}", time.time() + 30)
                    client.call("join-group", {"group": ROOM})
                client_id = f"s{n}-{count}"
                try:
                    ack = client.call("send-group-message", {"group": ROOM, "message": client_id, "created": count,
                                                             "client_id": client_id}, timeout=3)
                except Exception:
                    client.close()
                    client = None  # retried after reconnecting, with the same client id
                    continue
                if not ack.get("ok"):
                    if ack["error"]["code"] == "unavailable":
                        continue
                    if ack["error"]["code"] == "rate_limited":
                        # Past 100 sends a second (a sender that waits for each ack reaches it
                        # now): back off, then the same client id again, as a client would.
                        time.sleep(0.05)
                        continue
                    failures.append(ack)
                    return
                acked[n].append((client_id, ack["id"]))
                count += 1
        except Exception as error:
            failures.append(repr(error))
        finally:
            if client:
                client.close()

    def reader(name):
        client = None
        last = None
        view = []
        views[name] = view
        try:
            while not stop.is_set():
                if client is None:
                    client = connect_when_up(url, name, time.time() + 30)
                    payload = {"group": ROOM} if last is None else {"group": ROOM, "after": last}
                    try:
                        joined = client.call("join-group", payload, timeout=3)
                    except Exception:
                        client.close()
                        client = None
                        continue
                    if last is None:
                        last = joined["last_id"]
                        view.append(("start", last))
                    seen = 0
                if not client.sio.connected:
                    client.close()
                    client = None
                    continue
                messages = client.received("send-group-message")
                for message in messages[seen:]:
                    view.append(("msg", message["id"]))
                    last = message["id"]
                seen = len(messages)
                time.sleep(0.01)
            if client:
                messages = client.received("send-group-message")
                for message in messages[seen:]:
                    view.append(("msg", message["id"]))
        except Exception as error:
            failures.append(repr(error))
        finally:
            if client:
                client.close()

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
    threads += [threading.Thread(target=reader, args=(f"reader{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    try:
        for kill in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.2))
            server.kill()
            time.sleep(rng.uniform(0.0, 0.3))
            server = Server(chatlog, journal).start(port=port)
        time.sleep(rng.uniform(0.3, 0.8))
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not failures, failures

    checker = Client(url, "checker")
    history = []
    after = 0  # offset 0 is the room's creation, not a message
    while True:
        page = checker.call("history", {"group": ROOM, "after": after, "limit": 200})["messages"]
        if not page:
            break
        history += page
        after = page[-1]["id"]
    checker.close()
    server.stop()

    ids = [m["id"] for m in history]
    texts = [m["message"] for m in history]
    assert ids == sorted(set(ids)), "history has duplicates or is out of order"
    assert len(texts) == len(set(texts)), "a message was stored twice"
    by_text = {m["message"]: m["id"] for m in history}
    total = 0
    for n in range(SENDERS):
        assert acked[n], f"sender {n} got no ack"
        for client_id, message_id in acked[n]:
            assert by_text.get(client_id) == message_id, f"acknowledged {client_id} -> {message_id} missing or moved"
        order = [by_text[client_id] for client_id, _ in acked[n]]
        assert order == sorted(order), f"sender {n}'s messages are out of order"
        total += len(acked[n])
    assert total > 20, "too few acknowledged sends to mean anything"
    for name, view in views.items():
        start = view[0][1]
        received = [i for kind, i in view if kind == "msg"]
        expected = [i for i in ids if start is None or i > start][:len(received)]
        assert received == expected, f"{name}: gap or duplicate: {sorted(set(received) ^ set(expected))[:10]}"
        assert len(received) > 10


def test_with_retention_a_server_killed_with_kill_minus_nine_starts_again_with_its_rooms(chatlog, tmp_path):
    """Retention deletes only what the room-state snapshot (and History) cover. It used to
    delete by size alone while the snapshot was written only at start-up and at a clean stop:
    killed after that, the server could not start again ("the projections need offset 0 but the
    journal retains only from 1281"), and no rebuild could bring its rooms back."""
    from test_replication import SEGMENT_BYTES, send, wait_until

    directory = tmp_path / "journal"
    segments = lambda: sorted(p.name for p in directory.glob("*.log"))  # noqa: E731

    def start(interval: str) -> Server:
        return Server(chatlog, directory, "--segment-bytes", SEGMENT_BYTES, "--retention-bytes", SEGMENT_BYTES,
                      "--snapshot-interval", interval, "--events-per-second", "100000", "--events-burst", "100000").start()

    def killed_and_restarted(server: Server, interval: str) -> Server:
        before = {user: rooms_of(server.url, user) for user in ("alice", "bob", "carol")}
        end = requests.get(server.url + "/healthz", timeout=10).json()["offset"]
        messages = page(server.url, "g", end)
        server.process.kill()
        server.process.wait(timeout=10)
        server = start(interval)
        assert {user: rooms_of(server.url, user) for user in ("alice", "bob", "carol")} == before
        assert page(server.url, "g", end) == messages
        return server

    # No snapshot since start-up: retention keeps the segments past the size limit.
    server = start("1h")
    try:
        private_room(server.url)
        send(server.url, 3000, size=4000)
        assert len(segments()) >= 3 and segments()[0] == "0" * 20 + ".log", segments()
        server = killed_and_restarted(server, "200ms")
        # The start-up's snapshot released them; the periodic one releases what comes next.
        wait_until(lambda: segments()[0] != "0" * 20 + ".log", what="retention after the start-up snapshot")
        first = segments()[0]
        send(server.url, 1500, size=4000)
        wait_until(lambda: segments()[0] != first, what="retention after a periodic snapshot")
        server = killed_and_restarted(server, "200ms")
    finally:
        server.stop()
