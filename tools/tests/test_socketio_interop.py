"""Socket.IO interop: the real python-socketio client against `chatlog dev socketio-conformance`,
plus the Engine.IO wire rules checked with plain HTTP and WebSocket clients."""

import json
import subprocess
import threading
import time

import pytest
import requests
import socketio
import websocket



@pytest.fixture(scope="module")
def server(chatlog):
    process = subprocess.Popen([chatlog, "dev", "socketio-conformance", "--port", "0", "--log-level", "error"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("listening on "), line + process.stderr.read()
    url = "http://" + line.split()[-1]
    yield url
    process.terminate()
    process.wait(timeout=10)


def connect(url, transports=None, namespace="/", auth=None):
    client = socketio.Client(reconnection=False)
    events = {}
    lock = threading.Lock()

    def record(name):
        def handler(*args):
            with lock:
                events.setdefault(name, []).append(args)
        return handler

    for name in ("auth", "message-back", "room-message"):
        client.on(name, record(name), namespace=namespace)
    client.connect(url, auth=auth, transports=transports, namespaces=[namespace], wait_timeout=5)
    return client, events


def wait_for(events, name, count=1, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(events.get(name, [])) >= count:
            return events[name]
        time.sleep(0.02)
    raise AssertionError(f"no {name} event within {timeout}s: {events}")


TRANSPORTS = [None, ["websocket"]]  # default (polling, then upgrade) and websocket-only


@pytest.mark.parametrize("transports", TRANSPORTS, ids=["default", "websocket-only"])
def test_connect_with_auth_emit_and_ack(server, transports):
    client, events = connect(server, transports, auth={"token": "abc", "n": 1})
    try:
        assert wait_for(events, "auth") == [({"token": "abc", "n": 1},)]
        client.emit("message", (1, "two", {"three": [3]}, None, True))
        assert wait_for(events, "message-back") == [(1, "two", {"three": [3]}, None, True)]
        assert client.call("message-with-ack", ("x", 2.5, ["é☕"]), timeout=5) == ("x", 2.5, ["é☕"])
        client.emit("message", b"\x01\x02\x03")
        assert wait_for(events, "message-back", 2)[1] == (b"\x01\x02\x03",)
        time.sleep(0.8)  # several 300 ms ping intervals: the session stays up
        assert client.connected
        if transports is None:
            assert client.transport() == "websocket", "the default mode upgrades"
    finally:
        client.disconnect()


@pytest.mark.parametrize("transports", TRANSPORTS, ids=["default", "websocket-only"])
def test_rooms_get_only_their_own_broadcasts(server, transports):
    alice, alice_events = connect(server, transports)
    bob, bob_events = connect(server, transports)
    carol, carol_events = connect(server, transports)
    try:
        alice.call("join", ("general",), timeout=5)
        bob.call("join", ("general",), timeout=5)
        carol.call("join", ("random",), timeout=5)
        alice.call("to-room", ("general", "hello general"), timeout=5)
        carol.call("to-room", ("random", "hello random"), timeout=5)
        assert wait_for(bob_events, "room-message") == [("hello general",)]
        time.sleep(0.3)
        assert "room-message" not in alice_events, "the sender is excluded"
        assert "room-message" not in carol_events, "other rooms get nothing"
    finally:
        for client in (alice, bob, carol):
            client.disconnect()


def test_custom_namespace_and_unknown_namespace(server):
    client, events = connect(server, namespace="/custom", auth={"who": "custom"})
    try:
        assert wait_for(events, "auth") == [({"who": "custom"},)]
    finally:
        client.disconnect()
    refused = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(server, namespaces=["/nowhere"], wait_timeout=3)


@pytest.mark.parametrize("transports", TRANSPORTS, ids=["default", "websocket-only"])
def test_reconnect_after_disconnect(server, transports):
    client, events = connect(server, transports, auth={"round": 1})
    assert wait_for(events, "auth") == [({"round": 1},)]
    first_sid = client.sid
    client.disconnect()
    client.connect(server, auth={"round": 2}, transports=transports, wait_timeout=5)
    try:
        assert client.sid != first_sid
        assert wait_for(events, "auth", 2)[1] == ({"round": 2},)
    finally:
        client.disconnect()


# Engine.IO rules, with plain HTTP and WebSocket.

def handshake(url):
    response = requests.get(f"{url}/socket.io/", params={"EIO": "4", "transport": "polling"}, timeout=5)
    assert response.status_code == 200
    assert response.text.startswith("0")
    return json.loads(response.text[1:])


def test_handshake_and_bad_requests(server):
    opened = handshake(server)
    assert set(opened) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert opened["upgrades"] == ["websocket"] and opened["pingInterval"] == 300 and opened["maxPayload"] == 1000000
    for params, code in [({"transport": "polling"}, 5), ({"EIO": "abc", "transport": "polling"}, 5),
                         ({"EIO": "4"}, 0), ({"EIO": "4", "transport": "abc"}, 0),
                         ({"EIO": "4", "transport": "polling", "sid": "nope"}, 1)]:
        response = requests.get(f"{server}/socket.io/", params=params, timeout=5)
        assert response.status_code == 400 and response.json()["code"] == code, params
    response = requests.put(f"{server}/socket.io/", params={"EIO": "4", "transport": "polling"}, timeout=5)
    assert response.status_code == 400


def test_polling_round_trip_ping_timeout_and_duplicate_poll(server):
    url = f"{server}/engine.io/"
    opened = json.loads(requests.get(url, params={"EIO": "4", "transport": "polling"}, timeout=5).text[1:])
    params = {"EIO": "4", "transport": "polling", "sid": opened["sid"]}
    assert requests.post(url, params=params, data="4hello\x1e4world\x1ebAQIDBA==", timeout=5).text == "ok"
    assert requests.get(url, params=params, timeout=5).text == "4hello\x1e4world\x1ebAQIDBA=="
    # The server pings; a client that never answers is closed after pingInterval + pingTimeout.
    assert requests.get(url, params=params, timeout=5).text == "2"
    time.sleep(0.6)
    assert requests.post(url, params=params, data="3", timeout=5).status_code == 400
    # A malformed payload closes the session.
    opened = json.loads(requests.get(url, params={"EIO": "4", "transport": "polling"}, timeout=5).text[1:])
    params = {"EIO": "4", "transport": "polling", "sid": opened["sid"]}
    assert requests.post(url, params=params, data="abc", timeout=5).status_code == 400
    assert requests.get(url, params=params, timeout=5).status_code == 400


def recv_skipping_pings(ws):
    """The next frame that is not a server ping; pings are answered."""
    while True:
        frame = ws.recv()
        if frame != "2":
            return frame
        ws.send("3")


def test_websocket_upgrade_sequence(server):
    url = f"{server}/engine.io/"
    opened = json.loads(requests.get(url, params={"EIO": "4", "transport": "polling"}, timeout=5).text[1:])
    ws = websocket.create_connection(f"{server.replace('http', 'ws')}/engine.io/?EIO=4&transport=websocket&sid={opened['sid']}", timeout=5)
    try:
        # While the WebSocket is upgrading, polls end with a noop (after a short hold).
        for _ in range(2):
            poll = requests.get(url, params={"EIO": "4", "transport": "polling", "sid": opened["sid"]}, timeout=5)
            assert (poll.status_code, poll.text) == (200, "6")
        ws.send("2probe")
        assert ws.recv() == "3probe"
        ws.send("5")
        ws.send("4hello")
        assert recv_skipping_pings(ws) == "4hello"
        ws.send_binary(b"\x01\x02")
        assert recv_skipping_pings(ws) == b"\x01\x02"
        # Polling is over for this session.
        assert requests.get(url, params={"EIO": "4", "transport": "polling", "sid": opened["sid"]}, timeout=5).status_code == 400
    finally:
        ws.close()


def test_a_poll_racing_the_upgrade_gets_400(server):
    url = f"{server}/engine.io/"
    opened = json.loads(requests.get(url, params={"EIO": "4", "transport": "polling"}, timeout=5).text[1:])
    ws = websocket.create_connection(f"{server.replace('http', 'ws')}/engine.io/?EIO=4&transport=websocket&sid={opened['sid']}", timeout=5)
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        answers = []
        poller = threading.Thread(target=lambda: answers.append(
            requests.get(url, params={"EIO": "4", "transport": "polling", "sid": opened["sid"]}, timeout=5)))
        poller.start()
        time.sleep(0.02)  # the poll is usually held by now (for up to 100 ms) ...
        ws.send("5")      # ... and the upgrade completes first: either way, 400
        poller.join(5)
        assert [answer.status_code for answer in answers] == [400]
        ws.send("4after")
        assert recv_skipping_pings(ws) == "4after"
    finally:
        ws.close()


def test_websocket_only_session_and_bad_frame(server):
    ws = websocket.create_connection(f"{server.replace('http', 'ws')}/engine.io/?EIO=4&transport=websocket", timeout=5)
    try:
        opened = json.loads(ws.recv()[1:])
        assert opened["upgrades"] == []
        ws.send("4echo")
        assert ws.recv() == "4echo"
        ws.send("abc")  # not an Engine.IO packet: the server closes
        with pytest.raises(Exception):
            while True:
                ws.recv()
    finally:
        ws.close()


@pytest.mark.parametrize("bench", ["websocket", "socketio"])
def test_socketio_benchmarks_print_their_figures_as_a_final_json_line(chatlog, bench):
    arguments = ["--events", "3000"] if bench == "websocket" else ["--packets", "3000"]
    result = subprocess.run([chatlog, "bench", bench, *arguments, "--rounds", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    keys = (("socketio_echo_events_per_s", "engineio_echo_messages_per_s", "websocket_echo_messages_per_s")
            if bench == "websocket" else ("relay_packets_per_s", "build_packets_per_s", "typed_packets_per_s"))
    for key in keys:
        assert figures[key] > 0, key


def test_the_codec_benchmark_measures_a_frame_of_the_size_asked(chatlog):
    def run(*arguments):
        return subprocess.run([chatlog, "bench", "socketio", "--packets", "1000", "--rounds", "1", *arguments],
                              capture_output=True, text=True, timeout=120)

    # 150 bytes by default: the size issue 4's target names.
    for arguments, size in (((), 150), (("--frame-bytes", "176"), 176), (("--frame-bytes", "4096"), 4096)):
        result = run(*arguments)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1])["packet_bytes"] == size
    # A frame too small for the event without its sentence is refused, saying the least.
    result = run("--frame-bytes", "50")
    assert result.returncode != 0
    assert "--frame-bytes must be more than" in result.stderr
