"""Helpers for the chat server tests: a `chatlog serve` process and a recording Socket.IO client."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import requests
import socketio


class Server:
    """`chatlog serve` on a journal directory, on a free port of 127.0.0.1."""

    # Every server the running test started, for conftest to report when the test fails.
    started: list["Server"] = []

    def __init__(self, chatlog: str, journal: Path, *args: str, dev: bool = True, wrapper: list[str] | None = None,
                 address: str | None = None):
        self.chatlog = chatlog
        self.journal = journal
        self.args = list(args)
        self.dev = dev
        # A command the server runs under (`ip netns exec NS` puts it on a test host of its
        # own), and the address clients reach it at there (it listens on every address).
        self.wrapper = wrapper or []
        self.address = address
        self.process = None
        self.url = None
        self.stderr_path = journal.parent / f"serve-{journal.name}.log"

    def start(self, port: int = 0, timeout: float = 30):
        command = [*self.wrapper, self.chatlog, "serve", "--journal", str(self.journal), "--port", str(port), *self.args]
        if self.address:
            command += ["--host", "0.0.0.0"]
        if self.dev:
            command.append("--dev")
        self.stderr = open(self.stderr_path, "a")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        Server.started.append(self)
        line = self._readline(timeout)
        assert line.startswith("listening on "), f"server did not start: {line!r}\n{self.log()}"
        self.url = line.split()[-1]
        if self.address:
            self.url = f"http://{self.address}:{self.port}"
        return self

    def _readline(self, timeout):
        result = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return result[0] if result else ""

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log(self) -> str:
        if not self.stderr.closed:
            self.stderr.flush()
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout: float = 15) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.stderr.close()
        return code

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=10)
        self.stderr.close()


class Client:
    """A real python-socketio client that records every event it receives, in order."""

    NAMES = ("send-group-message", "user-joined", "user-left", "user-typing", "user-online", "user-offline",
             "member-invited", "invitation-revoked", "member-removed", "removed-from-group", "message-edited",
             "message-deleted", "error", "member-joined", "member-left", "typing", "reaction-added",
             "reaction-removed", "read-marker", "mentioned", "direct-opened")

    def __init__(self, url: str, username: str | None = None, token: str | None = None, transports=None,
                 reconnection=False):
        self.sio = socketio.Client(reconnection=reconnection)
        # python-socketio's client hands each received message to a new thread, so handlers
        # may see events out of the order they arrived in; the order is what these tests
        # check, so messages are handled on the reading thread, as they arrive.
        eio = self.sio.eio
        trigger = eio._trigger_event

        def in_arrival_order(event, *args, **kwargs):
            kwargs["run_async"] = False
            return trigger(event, *args, **kwargs)

        eio._trigger_event = in_arrival_order
        self.events = []
        self.lock = threading.Lock()
        for name in self.NAMES:
            self.sio.on(name, self._recorder(name))
        auth = {}
        if username is not None:
            auth["username"] = username
        if token is not None:
            auth["token"] = token
        self.sio.connect(url, auth=auth or None, transports=transports, wait_timeout=10)

    def _recorder(self, name):
        def handler(*args):
            with self.lock:
                self.events.append((name, args[0] if len(args) == 1 else list(args)))
        return handler

    def call(self, event: str, payload=None, timeout: float = 10):
        return self.sio.call(event, payload if payload is not None else {}, timeout=timeout)

    def emit(self, event: str, payload=None):
        self.sio.emit(event, payload if payload is not None else {})

    def received(self, name: str | None = None):
        with self.lock:
            return [data for (event, data) in self.events if name is None or event == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = 10, where=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            matching = [d for d in self.received(name) if where is None or where(d)]
            if len(matching) >= count:
                return matching
            time.sleep(0.01)
        raise AssertionError(f"{count} {name} events not received within {timeout}s; got {self.received()}")

    def close(self):
        try:
            self.sio.disconnect()
        except Exception:
            pass


class RawSocket:
    """A Socket.IO v5 client over a bare WebSocket (websocket-client), for what python-socketio
    does not do: connection state recovery (`pid` and `offset`)."""

    def __init__(self, url: str, auth: dict):
        import json
        import websocket
        self.json = json
        self.ws = websocket.create_connection(url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
                                              timeout=10)
        self.pending = []  # packets read while waiting for an ack
        opened = self.ws.recv()
        assert opened.startswith("0{"), opened
        self.ws.send("40" + json.dumps(auth))
        reply = self._next_packet()
        assert reply.startswith("40"), reply
        self.connect_reply = json.loads(reply[2:])
        self.next_ack = 0

    def _next_packet(self):
        if self.pending:
            return self.pending.pop(0)
        while True:
            frame = self.ws.recv()
            if frame == "2":  # Engine.IO ping
                self.ws.send("3")
                continue
            return frame

    def events(self, count: int):
        """The next `count` events, as [name, *arguments] lists (acks are skipped)."""
        got = []
        while len(got) < count:
            packet = self._next_packet()
            if packet.startswith("42"):
                got.append(self.json.loads(packet[2:]))
        return got

    def call(self, event: str, payload: dict):
        ack = self.next_ack
        self.next_ack += 1
        self.ws.send(f"42{ack}" + self.json.dumps([event, payload]))
        while True:
            frame = self.ws.recv()
            if frame == "2":
                self.ws.send("3")
            elif frame.startswith(f"43{ack}"):
                return self.json.loads(frame[len(f"43{ack}"):])[0]
            else:
                self.pending.append(frame)

    def close(self):
        self.ws.close()


# Reading and seeding a server's rooms through its HTTP API and a client (tests that compare
# two servers' rooms: a backup restored, a server restarted after a crash).

def api(url: str, path: str, user: str = "alice"):
    response = requests.get(url + path, headers={"X-Chatlog-User": user}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def page(url: str, room: str, before: int, user: str = "alice") -> list[tuple[int, str]]:
    """The 200 messages of `room` below `before`, as (id, text)."""
    messages = api(url, f"/api/rooms/{room}/messages?before={before}&limit=200", user)["messages"]
    return [(message["id"], message.get("message")) for message in messages]


def rooms_of(url: str, user: str) -> dict:
    return {room["group"]: room for room in api(url, "/api/rooms", user)["rooms"]}


def private_room(url: str):
    """A private room `p` of alice's, bob invited, carol a member, an edited and a deleted message."""
    alice = Client(url, "alice", transports=["websocket"])
    carol = Client(url, "carol", transports=["websocket"])
    try:
        assert alice.call("create-group", {"group": "p", "private": True})["ok"]
        for invitee in ("bob", "carol"):
            assert alice.call("invite", {"group": "p", "username": invitee})["ok"]
        assert carol.call("join-group", {"group": "p"})["ok"]
        kept = alice.call("send-group-message", {"group": "p", "message": "kept", "created": 1})["id"]
        gone = alice.call("send-group-message", {"group": "p", "message": "gone", "created": 2})["id"]
        assert alice.call("edit-message", {"group": "p", "id": kept, "message": "kept, edited"})["ok"]
        assert alice.call("delete-message", {"group": "p", "id": gone})["ok"]
    finally:
        alice.close()
        carol.close()
