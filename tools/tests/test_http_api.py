"""The HTTP API (`/api/rooms…`, docs/protocol.md "HTTP API") and `/metrics`, against a real `chatlog serve`:
the same rules and broadcasts as the socket events, every refusal as {error: {code, message}}
with its status, tokens outside development mode, and the Prometheus scrape."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import requests

from chatserver import Client, Server
from conftest import run


@pytest.fixture()
def server(chatlog, journal):
    server = Server(chatlog, journal).start()
    yield server
    server.stop()


def api(server, method, path, user="alice", **kwargs):
    headers = kwargs.pop("headers", {})
    if user is not None:
        headers["X-Chatlog-User"] = user
    return requests.request(method, server.url + path, headers=headers, timeout=10, **kwargs)


def error_of(response, status, code, message=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    if message is not None:
        assert body["error"]["message"] == message, body
    return body


def test_rooms_messages_and_members_through_the_api(server):
    created = api(server, "POST", "/api/rooms", json={"group": "general", "name": "General"})
    assert created.status_code == 201, created.text
    assert created.json() == {"group": "general", "name": "General", "private": False, "owner": "alice",
                              "members": 1, "member": True}
    error_of(api(server, "POST", "/api/rooms", json={"group": "general"}), 409, "room_exists")

    ids = []
    for index in range(5):
        posted = api(server, "POST", "/api/rooms/general/messages", json={"message": f"m{index}", "client_id": f"c{index}"})
        assert posted.status_code == 201, posted.text
        assert posted.json()["group"] == "general" and posted.json()["client_id"] == f"c{index}"
        ids.append(posted.json()["id"])
    assert ids == sorted(ids)

    # Idempotent by client_id: the same id, and no second message.
    again = api(server, "POST", "/api/rooms/general/messages", json={"message": "m0 again", "client_id": "c0"})
    assert again.status_code == 201 and again.json()["id"] == ids[0]

    page = api(server, "GET", "/api/rooms/general/messages").json()
    assert [m["message"] for m in page["messages"]] == [f"m{i}" for i in range(5)]
    assert [m["client_id"] for m in page["messages"]] == [f"c{i}" for i in range(5)]
    assert all(m["username"] == "alice" and m["group"] == "general" for m in page["messages"])
    # The history event's paging: newest before, oldest after, a limit.
    assert [m["id"] for m in api(server, "GET", f"/api/rooms/general/messages?before={ids[3]}&limit=2").json()["messages"]] == ids[1:3]
    assert [m["id"] for m in api(server, "GET", f"/api/rooms/general/messages?after={ids[1]}&limit=2").json()["messages"]] == ids[2:4]
    assert [m["id"] for m in api(server, "GET", f"/api/rooms/general/messages?after={ids[0]}&before={ids[3]}").json()["messages"]] == ids[1:3]
    error_of(api(server, "GET", "/api/rooms/general/messages?limit=0"), 400, "invalid_payload")
    error_of(api(server, "GET", "/api/rooms/general/messages?limit=201"), 400, "invalid_payload")
    error_of(api(server, "GET", "/api/rooms/general/messages?limit=many"), 400, "invalid_payload")

    # A public room takes anyone's messages (as send-group-message does); joining twice changes nothing.
    assert api(server, "POST", "/api/rooms/general/messages", user="bob", json={"message": "hi"}).status_code == 201
    joined = api(server, "POST", "/api/rooms/general/members", user="bob")
    assert joined.status_code == 200 and joined.json()["members"] == ["alice", "bob"]
    assert api(server, "POST", "/api/rooms/general/members", user="bob").status_code == 200
    members = api(server, "GET", "/api/rooms/general/members", user="bob").json()
    assert members["owner"] == "alice" and members["members"] == ["alice", "bob"] and not members["private"]
    assert api(server, "DELETE", "/api/rooms/general/members/bob", user="bob").status_code == 204
    assert api(server, "GET", "/api/rooms/general/members").json()["members"] == ["alice"]
    error_of(api(server, "POST", "/api/rooms/nowhere/members", user="bob"), 404, "room_not_found")
    error_of(api(server, "GET", "/api/rooms/nowhere/messages"), 404, "room_not_found")


def test_private_rooms_are_enforced_as_on_sockets(server):
    assert api(server, "POST", "/api/rooms", json={"group": "secret", "private": True}).status_code == 201
    assert api(server, "POST", "/api/rooms", json={"group": "lobby"}).status_code == 201
    api(server, "POST", "/api/rooms/secret/messages", json={"message": "for members"})

    # Carol sees the public room only, and nothing of the private one.
    assert [r["group"] for r in api(server, "GET", "/api/rooms", user="carol").json()["rooms"]] == ["lobby"]
    error_of(api(server, "GET", "/api/rooms/secret/messages", user="carol"), 403, "not_member")
    error_of(api(server, "GET", "/api/rooms/secret/members", user="carol"), 403, "not_member")
    error_of(api(server, "POST", "/api/rooms/secret/members", user="carol"), 403, "not_invited")
    error_of(api(server, "POST", "/api/rooms/secret/messages", user="carol", json={"message": "x"}), 403, "not_member")

    # Only the owner invites; the invitee then joins and reads.
    error_of(api(server, "POST", "/api/rooms/secret/invitations", user="carol", json={"username": "carol"}), 403, "not_owner")
    invited = api(server, "POST", "/api/rooms/secret/invitations", json={"username": "carol"})
    assert invited.status_code == 201 and invited.json() == {"group": "secret", "username": "carol"}
    error_of(api(server, "POST", "/api/rooms/secret/invitations", json={"username": "carol"}), 409, "already_invited")
    assert api(server, "GET", "/api/rooms/secret/members").json()["invited"] == ["carol"]
    assert api(server, "POST", "/api/rooms/secret/members", user="carol").status_code == 200
    assert "invited" not in api(server, "GET", "/api/rooms/secret/members", user="carol").json()
    assert [m["message"] for m in api(server, "GET", "/api/rooms/secret/messages", user="carol").json()["messages"]] == ["for members"]
    rooms = {r["group"]: r for r in api(server, "GET", "/api/rooms", user="carol").json()["rooms"]}
    assert rooms["secret"]["member"] and rooms["secret"]["private"] and not rooms["lobby"]["member"]

    # The owner removes her; the owner cannot be removed.
    error_of(api(server, "DELETE", "/api/rooms/secret/members/alice", user="carol"), 403, "not_owner")
    assert api(server, "DELETE", "/api/rooms/secret/members/carol").status_code == 204
    error_of(api(server, "GET", "/api/rooms/secret/messages", user="carol"), 403, "not_member")
    error_of(api(server, "POST", "/api/rooms/lobby/invitations", json={"username": "carol"}), 400, "not_private")


def test_a_posted_message_reaches_the_rooms_sockets_like_a_socket_send(server):
    api(server, "POST", "/api/rooms", json={"group": "general"})
    listener = Client(server.url, username="bob")
    try:
        assert listener.call("join-group", {"group": "general"})["ok"]
        posted = api(server, "POST", "/api/rooms/general/messages", json={"message": "from a bot", "client_id": "bot-1"})
        assert posted.status_code == 201
        [message] = listener.wait_for("send-group-message")
        assert message["message"] == "from a bot" and message["username"] == "alice"
        assert message["id"] == posted.json()["id"] and message["client_id"] == "bot-1"
        # A socket's message is in the API's history, in the same shape as the history event's.
        listener.call("send-group-message", {"group": "general", "message": "from a socket"})
        over_api = api(server, "GET", "/api/rooms/general/messages").json()["messages"]
        over_socket = listener.call("history", {"group": "general"})["messages"]
        assert over_api == over_socket
    finally:
        listener.close()


def test_bad_input_is_refused_with_the_documented_statuses(server):
    api(server, "POST", "/api/rooms", json={"group": "general"})
    error_of(api(server, "GET", "/api/rooms", user=None), 401, "unauthorized")
    error_of(api(server, "GET", "/api/rooms", user=""), 401, "unauthorized")
    # The generated code's input errors in a sentence that names what to change, no decoder dump.
    error_of(api(server, "POST", "/api/rooms", data="{not json", headers={"Content-Type": "application/json"}), 400,
             "invalid_payload", "the body is not valid JSON")
    error_of(api(server, "POST", "/api/rooms", json={"name": "no id"}), 400, "invalid_payload",
             "the body lacks group, which is required")
    error_of(api(server, "POST", "/api/rooms", json={"group": 5}), 400, "invalid_payload", "group must be a string")
    error_of(api(server, "POST", "/api/rooms", json={"group": None}), 400, "invalid_payload", "group must not be null")
    error_of(api(server, "POST", "/api/rooms", json=["general"]), 400, "invalid_payload", "the body must be a JSON object")
    error_of(api(server, "GET", "/api/rooms/general/messages?limit=many"), 400, "invalid_payload",
             "a query parameter must be a number (see the operation in /openapi.yaml)")
    error_of(api(server, "POST", "/api/rooms", json={"group": "x" * 129}), 400, "invalid_payload")
    error_of(api(server, "POST", "/api/rooms", json={"group": "tab\there"}), 400, "invalid_payload")
    error_of(api(server, "POST", "/api/rooms/general/messages", json={"message": ""}), 400, "invalid_text")
    error_of(api(server, "POST", "/api/rooms/general/messages", json={"message": "x" * 4097}), 400, "invalid_text")
    error_of(api(server, "POST", "/api/rooms/general/messages", json={"message": "x", "client_id": "c" * 65}), 400,
             "invalid_client_message_id")
    error_of(api(server, "POST", "/api/rooms/general/messages", json={"message": "x" * 70_000}), 413, "payload_too_large")
    # The prefix of the ids the server makes up (FORMAT.md §5) is not the client's to send.
    error_of(api(server, "POST", "/api/rooms/general/messages", json={"message": "x", "client_id": "chatlog:x"}), 400,
             "invalid_payload")
    error_of(api(server, "POST", "/api/rooms", data="group=x", headers={"Content-Type": "application/x-www-form-urlencoded"}),
             415, "invalid_payload", "send the body as JSON, with Content-Type: application/json")
    error_of(api(server, "GET", "/api/rooms", headers={"Accept": "text/html"}), 406, "invalid_payload",
             "this API answers application/json: accept it (Accept: application/json or */*)")
    assert requests.get(server.url + "/api/nothing-here", timeout=5).status_code == 404
    # A method a path does not have: 405 with the ones it has, whatever the method.
    for method in ("PUT", "PATCH", "DELETE", "QUERY"):
        refused = api(server, method, "/api/rooms")
        error_of(refused, 405, "invalid_payload")
        assert refused.headers["Allow"] == "GET, POST"
    assert api(server, "GET", "/api/rooms/general/members/alice").headers["Allow"] == "DELETE"


def test_schemathesis_finds_nothing_against_the_document(chatlog):
    """The short run of tools/api-fuzz.sh (docs/protocol.md "HTTP API" has the long one)."""
    script = Path(__file__).resolve().parents[1] / "api-fuzz.sh"
    result = subprocess.run([str(script), "15"], capture_output=True, text=True, timeout=240,
                            env={**os.environ, "CHATLOG": chatlog, "SEED": "1"})
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "No issues found" in result.stdout


def test_the_rate_limit_answers_429_per_user(chatlog, journal):
    server = Server(chatlog, journal, "--events-per-second", "5", "--events-burst", "5").start()
    try:
        statuses = [api(server, "GET", "/api/rooms").status_code for _ in range(12)]
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
        limited = next(r for r in (api(server, "GET", "/api/rooms") for _ in range(5)) if r.status_code == 429)
        error_of(limited, 429, "rate_limited")
        assert limited.headers["Retry-After"] == "1"
        assert api(server, "GET", "/api/rooms", user="someone-else").status_code == 200
    finally:
        server.stop()


def test_tokens_outside_development_mode(chatlog, journal):
    server = Server(chatlog, journal, dev=False).start()
    try:
        issued = run(chatlog, "token", "issue", "alice", "--journal", str(journal))
        assert issued.returncode == 0, issued.stderr
        token = issued.stdout.strip()
        bearer = {"Authorization": f"Bearer {token}"}
        created = api(server, "POST", "/api/rooms", user=None, headers=dict(bearer), json={"group": "ops"})
        assert created.status_code == 201 and created.json()["owner"] == "alice"
        # The development header is not a way in.
        error_of(api(server, "GET", "/api/rooms", user="alice"), 401, "unauthorized")
        error_of(api(server, "GET", "/api/rooms", user=None, headers={"Authorization": "Bearer nonsense"}), 401, "unauthorized")
        error_of(api(server, "GET", "/api/rooms", user=None, headers={"Authorization": f"Basic {token}"}), 401, "unauthorized")
        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        error_of(api(server, "GET", "/api/rooms", user=None, headers={"Authorization": f"Bearer {tampered}"}), 401, "unauthorized")
    finally:
        server.stop()


def test_the_openapi_document_is_served(server):
    response = requests.get(server.url + "/openapi.yaml", timeout=5)
    assert response.status_code == 200
    assert response.text.startswith("openapi: 3.1.0")
    assert "/api/rooms/{group}/messages:" in response.text


def metric(text, name, labels=""):
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.M)
    found = pattern.search(text)
    assert found, f"{name}{labels} not in the scrape:\n{text}"
    return float(found.group(1))


def test_metrics_are_scraped_in_the_prometheus_format(server):
    before = requests.get(server.url + "/metrics", timeout=5)
    assert before.status_code == 200 and before.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert metric(before.text, "chat_deliveries_total") == 0
    assert metric(before.text, "socketio_slow_clients_disconnected_total") == 0

    api(server, "POST", "/api/rooms", json={"group": "general"})
    listener = Client(server.url, username="bob", transports=["websocket"])
    poller = Client(server.url, username="carol", transports=["polling"])
    try:
        listener.call("join-group", {"group": "general"})
        for index in range(3):
            api(server, "POST", "/api/rooms/general/messages", json={"message": f"m{index}"})
        listener.wait_for("send-group-message", 3)
        error_of(api(server, "GET", "/api/rooms/nowhere/members"), 404, "room_not_found")
        text = requests.get(server.url + "/metrics", timeout=5).text
        assert metric(text, "socketio_connections", '{transport="websocket"}') == 1
        assert metric(text, "socketio_connections", '{transport="polling"}') == 1
        # the room created, bob joined, three messages
        assert metric(text, "journal_events_appended_total") >= 5
        assert metric(text, "chat_deliveries_total") >= 3
        assert metric(text, "chat_commands_refused_total", '{code="room_not_found"}') >= 1
        assert metric(text, "journal_commit_seconds_count") >= 5
        assert metric(text, "journal_fsync_seconds_count") >= 1
        assert metric(text, "journal_commit_seconds_bucket", '{le="+Inf"}') == metric(text, "journal_commit_seconds_count")
        assert metric(text, "journal_segments") == 1
        assert metric(text, "journal_bytes") > 0
        assert metric(text, "journal_committed_offset") == metric(text, "journal_events_appended_total")
        assert metric(text, "chat_projection_lag_events", '{projection="room_state"}') == 0
        assert metric(text, "chat_projection_lag_events", '{projection="history"}') >= 0
        assert metric(text, "chat_projection_lag_events", '{projection="search"}') >= 0
        assert metric(text, "chat_projection_failed", '{projection="search"}') == 0
        # A search waits for the index, which then holds everything committed.
        assert api(server, "GET", "/api/search?q=m0").status_code == 200
        text = requests.get(server.url + "/metrics", timeout=5).text
        assert metric(text, "chat_projection_lag_events", '{projection="search"}') == 0
    finally:
        listener.close()
        poller.close()


def test_replies_reactions_read_markers_direct_rooms_and_search_through_the_api(server):
    assert api(server, "POST", "/api/rooms", json={"group": "g"}).status_code == 201
    assert api(server, "POST", "/api/rooms/g/members", user="bob").status_code == 200
    bob = Client(server.url, "bob")
    try:
        bob.call("join-group", {"group": "g"})
        first = api(server, "POST", "/api/rooms/g/messages", json={"message": "deploy @bob?"}).json()["id"]
        reply = api(server, "POST", "/api/rooms/g/messages", user="bob", json={"message": "yes", "reply_to": first})
        assert reply.status_code == 201, reply.text
        assert bob.wait_for("mentioned") == [{"group": "g", "id": first, "by": "alice"}]
        # Reactions: the emoji percent-encoded in the path; again changes nothing.
        for _ in range(2):
            assert api(server, "PUT", f"/api/rooms/g/messages/{first}/reactions/%F0%9F%91%8D", user="bob").status_code == 204
        assert bob.wait_for("reaction-added") == [{"group": "g", "id": first, "emoji": "👍", "username": "bob"}]
        messages = api(server, "GET", "/api/rooms/g/messages").json()["messages"]
        assert messages[0]["reactions"] == {"👍": ["bob"]} and messages[1]["reply_to"] == first
        assert api(server, "DELETE", f"/api/rooms/g/messages/{first}/reactions/%F0%9F%91%8D", user="bob").status_code == 204
        assert "reactions" not in api(server, "GET", "/api/rooms/g/messages").json()["messages"][0]
        error_of(api(server, "PUT", f"/api/rooms/g/messages/{first}/reactions/a%20b"), 400, "invalid_emoji")
        error_of(api(server, "PUT", "/api/rooms/g/messages/999/reactions/x"), 404, "message_not_found")
        error_of(api(server, "POST", "/api/rooms/g/messages", json={"message": "x", "reply_to": 999}), 404, "message_not_found")
        # Read markers and unread counts.
        mine = {room["group"]: room for room in api(server, "GET", "/api/me/rooms", user="bob").json()["rooms"]}
        assert mine["g"] == {"group": "g", "name": "g", "private": False, "owner": "alice", "members": 2, "direct": False,
                             "unread": 1, "mentions": 1}
        assert api(server, "PUT", "/api/rooms/g/read-marker", user="bob", json={"id": first}).status_code == 204
        assert bob.wait_for("read-marker") == [{"group": "g", "id": first}]
        mine = {room["group"]: room for room in api(server, "GET", "/api/me/rooms", user="bob").json()["rooms"]}
        assert mine["g"]["last_read"] == first and mine["g"]["unread"] == 0 and mine["g"]["mentions"] == 0
        error_of(api(server, "PUT", "/api/rooms/g/read-marker", user="carol", json={"id": first}), 403, "not_member")
        error_of(api(server, "PUT", "/api/rooms/g/read-marker", user="bob", json={"id": -1}), 400, "invalid_payload")
        # Direct rooms.
        opened = api(server, "POST", "/api/direct", json={"username": "bob"})
        assert opened.status_code == 200 and opened.json() == {"group": "dm:alice:bob", "with": "bob"}
        assert api(server, "POST", "/api/direct", user="bob", json={"username": "alice"}).json()["group"] == "dm:alice:bob"
        error_of(api(server, "POST", "/api/direct", json={"username": "ghost"}), 404, "user_not_found")
        error_of(api(server, "POST", "/api/rooms/dm:alice:bob/invitations", json={"username": "carol"}), 403, "direct_room")
        mine = {room["group"]: room for room in api(server, "GET", "/api/me/rooms").json()["rooms"]}
        assert mine["dm:alice:bob"]["direct"] is True and mine["dm:alice:bob"]["with"] == "bob"
        # Search.
        found = api(server, "GET", "/api/search", params={"q": "deploy"})
        assert found.status_code == 200 and [m["id"] for m in found.json()["messages"]] == [first]
        assert api(server, "GET", "/api/search", user="carol", params={"q": "deploy"}).json() == {"messages": []}
        error_of(api(server, "GET", "/api/search", params={"q": "*"}), 400, "invalid_payload")
        error_of(api(server, "GET", "/api/search", user="carol", params={"q": "deploy", "group": "g"}), 403, "not_member")
    finally:
        bob.close()
