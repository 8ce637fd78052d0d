"""What daily chat users expect, through real python-socketio clients: replies, reactions, read
markers and unread counts, mentions and direct messages; each after a restart (from the
snapshot and from the journal alone) and after `projections rebuild`; and every bad input
refused with a clear code, never journaled."""

import shutil
import time

from chatserver import Client, Server
from conftest import run
from test_chat_server import clients, server  # noqa: F401 (fixtures)


def send(client, group, message, **extra):
    ack = client.call("send-group-message", {"group": group, "message": message, "created": 1, **extra})
    assert ack["ok"], ack
    return ack["id"]


def groups(client):
    answer = client.call("my-groups")
    assert answer["ok"], answer
    return {entry["group"]: entry for entry in answer["groups"]}


def history(client, group):
    answer = client.call("history", {"group": group})
    assert answer["ok"], answer
    return answer["messages"]


def journal_size(journal):
    return sum(path.stat().st_size for path in journal.glob("*.log"))


def test_replies_are_broadcast_and_kept_in_history(server, clients):
    alice = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    alice.call("join-group", {"group": "g"})
    bob.call("join-group", {"group": "g"})
    question = send(alice, "g", "lunch?")
    answer = send(bob, "g", "yes", reply_to=question)
    broadcast = alice.wait_for("send-group-message", 2)[1]
    assert broadcast["reply_to"] == question and broadcast["id"] == answer
    assert "reply_to" not in alice.received("send-group-message")[0]
    assert [m.get("reply_to") for m in history(bob, "g")] == [None, question]


def test_reactions_are_one_per_user_and_emoji_and_shown_in_history(server, clients):
    alice = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    alice.call("join-group", {"group": "g"})
    bob.call("join-group", {"group": "g"})
    message = send(alice, "g", "ship it")
    assert bob.call("react", {"group": "g", "id": message, "emoji": "👍"}) == {"ok": True}
    assert alice.wait_for("reaction-added") == [{"group": "g", "id": message, "emoji": "👍", "username": "bob"}]
    # Reacting again changes nothing and is not broadcast again.
    assert bob.call("react", {"group": "g", "id": message, "emoji": "👍"}) == {"ok": True}
    assert alice.call("react", {"group": "g", "id": message, "emoji": "👍"})["ok"]
    assert alice.call("react", {"group": "g", "id": message, "emoji": "🎉"})["ok"]
    alice.wait_for("reaction-added", 3)
    time.sleep(0.2)
    assert len(alice.received("reaction-added")) == 3
    assert history(bob, "g")[0]["reactions"] == {"👍": ["bob", "alice"], "🎉": ["alice"]}
    assert bob.call("unreact", {"group": "g", "id": message, "emoji": "👍"}) == {"ok": True}
    assert alice.wait_for("reaction-removed") == [{"group": "g", "id": message, "emoji": "👍", "username": "bob"}]
    assert bob.call("unreact", {"group": "g", "id": message, "emoji": "👍"}) == {"ok": True}  # not reacted: nothing
    assert history(alice, "g")[0]["reactions"] == {"👍": ["alice"], "🎉": ["alice"]}
    # A deleted message loses its reactions.
    assert alice.call("delete-message", {"group": "g", "id": message})["ok"]
    assert "reactions" not in history(alice, "g")[0]


def test_a_message_takes_at_most_twenty_different_reactions(server, clients):
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    message = send(alice, "g", "vote")
    for n in range(20):
        assert alice.call("react", {"group": "g", "id": message, "emoji": f"e{n}"})["ok"]
    refused = alice.call("react", {"group": "g", "id": message, "emoji": "one-more"})
    assert refused["error"]["code"] == "too_many_reactions"
    assert alice.call("react", {"group": "g", "id": message, "emoji": "e3"})["ok"], "an existing one may still be given"


def test_read_markers_count_unread_and_reach_the_users_other_sockets(server, clients):
    alice = clients(server.url, "alice")
    alice_phone = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    alice.call("join-group", {"group": "g"})
    bob.call("join-group", {"group": "g"})
    ids = [send(bob, "g", f"m{n}") for n in range(5)]
    send(alice, "g", "mine")  # the user's own messages are never unread
    deleted = send(bob, "g", "oops")
    assert bob.call("delete-message", {"group": "g", "id": deleted})["ok"]
    entry = groups(alice)["g"]
    assert entry["last_read"] is None and entry["unread"] == 5 and entry["mentions"] == 0
    assert alice.call("mark-read", {"group": "g", "id": ids[2]}) == {"ok": True}
    assert alice_phone.wait_for("read-marker") == [{"group": "g", "id": ids[2]}]
    assert alice.wait_for("read-marker") == [{"group": "g", "id": ids[2]}]
    time.sleep(0.2)
    assert bob.received("read-marker") == [], "nobody else learns a user's read marker"
    assert groups(alice)["g"] | {} == groups(alice_phone)["g"]
    assert groups(alice)["g"]["last_read"] == ids[2] and groups(alice)["g"]["unread"] == 2
    # A marker only moves forward: an older one is acknowledged and changes nothing.
    assert alice.call("mark-read", {"group": "g", "id": ids[0]}) == {"ok": True}
    assert groups(alice)["g"]["last_read"] == ids[2]
    # bob's unread does not move with alice's marker: he has read nothing of alice's.
    assert groups(bob)["g"]["unread"] == 1


def test_a_member_who_joins_has_read_what_was_there(server, clients):
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    last = [send(alice, "g", f"m{n}") for n in range(3)][-1]
    bob = clients(server.url, "bob")
    bob.call("join-group", {"group": "g"})
    assert groups(bob)["g"]["last_read"] == last and groups(bob)["g"]["unread"] == 0
    send(alice, "g", "new")
    assert groups(bob)["g"]["unread"] == 1


def test_mentions_tell_every_socket_of_a_member_and_never_a_non_member(server, clients):
    owner = clients(server.url, "owner")
    assert owner.call("create-group", {"group": "secret", "private": True})["ok"]
    assert owner.call("invite", {"group": "secret", "username": "bob"})["ok"]
    bob = clients(server.url, "bob")
    bob_elsewhere = clients(server.url, "bob")
    assert bob.call("join-group", {"group": "secret"})["ok"]
    carol = clients(server.url, "carol")
    carol.call("join-group", {"group": "lobby"})  # carol exists, but is not in the room
    message = send(owner, "secret", "@bob, and @carol: look. mail@bob is not one; @owner neither")
    expected = {"group": "secret", "id": message, "by": "owner"}
    assert bob.wait_for("mentioned") == [expected]
    # Told on a socket that is in no room at all.
    assert bob_elsewhere.wait_for("mentioned") == [expected]
    time.sleep(0.3)
    assert carol.received("mentioned") == [] and owner.received("mentioned") == []
    entry = groups(bob)["secret"]
    assert entry["mentions"] == 1 and entry["unread"] == 1
    assert "secret" not in groups(carol)
    assert bob.call("mark-read", {"group": "secret", "id": message})["ok"]
    assert groups(bob)["secret"]["mentions"] == 0
    # An edit that adds a mention counts; a deletion takes it back.
    second = send(owner, "secret", "later")
    assert owner.call("edit-message", {"group": "secret", "id": second, "message": "later @bob"})["ok"]
    assert groups(bob)["secret"]["mentions"] == 1
    assert owner.call("delete-message", {"group": "secret", "id": second})["ok"]
    assert groups(bob)["secret"] == groups(bob)["secret"] | {"mentions": 0, "unread": 0}


def test_a_direct_room_is_the_same_whoever_opens_it_and_holds_exactly_two(server, clients):
    alice = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    carol = clients(server.url, "carol")
    for client in (alice, bob, carol):
        client.call("join-group", {"group": "lobby"})
    opened = alice.call("open-direct", {"username": "bob"})
    assert opened["ok"] and opened["group"] == "dm:alice:bob"
    room = opened["group"]
    notice = {"group": room, "by": "alice", "with": "bob"}
    assert bob.wait_for("direct-opened") == [notice] and alice.wait_for("direct-opened") == [notice]
    assert bob.call("open-direct", {"username": "alice"}) == {"ok": True, "group": room}
    assert groups(alice)[room] | {} == groups(alice)[room]
    entry = groups(bob)[room]
    assert entry["direct"] is True and entry["with"] == "alice" and entry["name"] == "alice" and entry["private"] is True
    assert groups(alice)[room]["name"] == "bob" and groups(alice)["lobby"]["direct"] is False
    assert bob.call("join-group", {"group": room})["ok"]
    assert alice.call("join-group", {"group": room})["ok"]
    send(alice, room, "psst")
    assert bob.wait_for("send-group-message", where=lambda m: m["group"] == room)[0]["message"] == "psst"
    # Nobody else gets in, by any door.
    assert carol.call("join-group", {"group": room})["error"]["code"] == "direct_room"
    assert alice.call("invite", {"group": room, "username": "carol"})["error"]["code"] == "direct_room"
    assert alice.call("remove-member", {"group": room, "username": "bob"})["error"]["code"] == "direct_room"
    assert carol.call("history", {"group": room})["error"]["code"] == "not_member"
    assert carol.call("send-group-message", {"group": room, "message": "hi"})["error"]["code"] == "not_member"
    # Leaving, and coming back by opening it again.
    assert bob.call("leave-group", {"group": room})["ok"]
    assert room not in groups(bob)
    assert carol.call("join-group", {"group": room})["error"]["code"] == "direct_room"
    assert bob.call("open-direct", {"username": "alice"}) == {"ok": True, "group": room}
    assert groups(bob)[room]["unread"] == 0, "rejoining marks what is there read"


def test_opening_a_direct_room_with_nobody_known_or_oneself_is_refused(server, clients):
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "lobby"})
    assert alice.call("open-direct", {"username": "ghost"})["error"]["code"] == "user_not_found"
    assert alice.call("open-direct", {"username": "alice"})["error"]["code"] == "direct_room"
    assert alice.call("open-direct", {})["error"]["code"] == "invalid_payload"
    assert "dm:alice:ghost" not in groups(alice)


def test_bad_input_is_refused_with_a_clear_code_and_never_journaled(server, clients, journal):
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    alice.call("join-group", {"group": "other"})
    mine = send(alice, "g", "hello")
    elsewhere = send(alice, "other", "there")
    gone = send(alice, "g", "bye")
    assert alice.call("delete-message", {"group": "g", "id": gone})["ok"]
    time.sleep(0.3)
    size = journal_size(journal)
    cases = [
        ("react", {"group": "g", "id": elsewhere, "emoji": "👍"}, "message_not_found"),
        ("react", {"group": "g", "id": gone, "emoji": "👍"}, "message_deleted"),
        ("react", {"group": "g", "id": 0, "emoji": "👍"}, "message_not_found"),  # the room's creation, not a message
        ("react", {"group": "g", "id": mine, "emoji": ""}, "invalid_emoji"),
        ("react", {"group": "g", "id": mine, "emoji": "x" * 33}, "invalid_emoji"),
        ("react", {"group": "g", "id": mine, "emoji": "a b"}, "invalid_emoji"),
        ("react", {"group": "g", "id": mine}, "invalid_payload"),
        ("react", {"group": "g", "id": -1, "emoji": "👍"}, "invalid_payload"),
        ("react", {"group": "nope", "id": mine, "emoji": "👍"}, "room_not_found"),
        ("unreact", {"group": "g", "id": gone, "emoji": "👍"}, "message_deleted"),
        ("send-group-message", {"group": "g", "message": "re", "reply_to": elsewhere}, "message_not_found"),
        ("send-group-message", {"group": "g", "message": "re", "reply_to": gone}, "message_deleted"),
        ("send-group-message", {"group": "g", "message": "re", "reply_to": "1"}, "invalid_payload"),
        ("mark-read", {"group": "g", "id": gone + 1000}, "message_not_found"),  # beyond the room's end
        ("mark-read", {"group": "g", "id": elsewhere}, "message_not_found"),
        ("mark-read", {"group": "g"}, "invalid_payload"),
        ("mark-read", {"group": "nope", "id": mine}, "room_not_found"),
        ("open-direct", {"username": ""}, "invalid_payload"),
    ]
    for event, payload, code in cases:
        answer = alice.call(event, payload)
        assert not answer["ok"] and answer["error"]["code"] == code, (event, payload, answer)
    bob = clients(server.url, "bob")
    assert bob.call("mark-read", {"group": "g", "id": mine})["error"]["code"] == "not_member"
    time.sleep(0.3)
    assert journal_size(journal) == size, "a refusal appended something"


def test_everything_survives_restarts_and_a_rebuild(chatlog, journal, clients):
    server = Server(chatlog, journal).start()
    alice = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    alice.call("join-group", {"group": "g"})
    bob.call("join-group", {"group": "g"})
    first = send(alice, "g", "hi @bob")
    reply = send(bob, "g", "hello", reply_to=first)
    assert bob.call("react", {"group": "g", "id": first, "emoji": "👋"})["ok"]
    send(alice, "g", "more")
    assert alice.call("mark-read", {"group": "g", "id": reply})["ok"]
    room = alice.call("open-direct", {"username": "bob"})["group"]
    send(alice, room, "dm")

    def state():
        client = Client(server.url, "bob")
        try:
            return groups(client), history(client, "g"), history(client, room)
        finally:
            client.close()

    def alice_state():
        client = Client(server.url, "alice")
        try:
            return groups(client)
        finally:
            client.close()

    before = (state(), alice_state())
    assert before[0][0]["g"]["mentions"] == 1 and before[0][0]["g"]["unread"] == 2 and before[0][0][room]["unread"] == 1
    assert before[1]["g"]["last_read"] == reply and before[1]["g"]["unread"] == 0
    for client in (alice, bob):
        client.close()
    server.stop()
    # From the snapshot a clean stop writes.
    server = Server(chatlog, journal).start()
    assert (state(), alice_state()) == before
    server.kill()
    # From the journal alone, projections rebuilt.
    (journal / "projections" / "room-state.snapshot").unlink()
    result = run(chatlog, "projections", "rebuild", "--journal", str(journal), "--log-level", "error")
    assert result.returncode == 0, result.stderr
    server = Server(chatlog, journal).start()
    try:
        assert (state(), alice_state()) == before
    finally:
        server.stop()


def test_a_standby_has_the_same_unread_counts_and_serves_the_new_events(chatlog, tmp_path, clients):
    secret = tmp_path / "replication.secret"
    secret.write_text("s" * 32)
    secret.chmod(0o600)
    leader = Server(chatlog, tmp_path / "leader", "--replication-secret-file", str(secret)).start()
    standby = Server(chatlog, tmp_path / "standby", "--standby-of", leader.url, "--replication-secret-file", str(secret),
                     "--standby-name", "s1").start()
    try:
        alice = clients(leader.url, "alice")
        bob = clients(standby.url, "bob")
        alice.call("join-group", {"group": "g"})
        assert bob.call("join-group", {"group": "g"})["ok"]
        message = send(alice, "g", "hey @bob")
        assert bob.wait_for("mentioned") == [{"group": "g", "id": message, "by": "alice"}]
        # Commands through the standby are forwarded to the leader.
        assert bob.call("react", {"group": "g", "id": message, "emoji": "👍"}) == {"ok": True}
        assert alice.wait_for("reaction-added")[0]["username"] == "bob"
        assert bob.call("open-direct", {"username": "alice"}) == {"ok": True, "group": "dm:alice:bob"}
        entry = groups(bob)["g"]
        assert entry["unread"] == 1 and entry["mentions"] == 1
        assert bob.call("mark-read", {"group": "g", "id": message}) == {"ok": True}
        assert groups(bob)["g"]["unread"] == 0
        alice_on_standby = clients(standby.url, "alice")
        assert groups(alice_on_standby)["dm:alice:bob"]["with"] == "bob"
        assert history(alice_on_standby, "g")[0]["reactions"] == {"👍": ["bob"]}
    finally:
        standby.stop()
        leader.stop()


def test_search_finds_the_newest_messages_of_the_callers_rooms_only(server, clients, journal):
    alice = clients(server.url, "alice")
    bob = clients(server.url, "bob")
    assert alice.call("create-group", {"group": "secret", "private": True})["ok"]
    alice.call("join-group", {"group": "g"})
    bob.call("join-group", {"group": "g"})
    old = send(alice, "g", "The release is on Friday")
    hidden = send(alice, "secret", "release notes: the password is hunter2")
    newer = send(bob, "g", "Réléase moved to Monday, sorry")  # diacritics and case are folded
    send(bob, "g", "unrelated")
    found = bob.call("search", {"query": "release"})
    assert found["ok"] and [m["id"] for m in found["messages"]] == [newer, old], "newest first, no private room"
    assert found["messages"][0] == {"group": "g", "message": "Réléase moved to Monday, sorry", "username": "bob",
                                    "created": 1, "id": newer}
    assert [m["id"] for m in alice.call("search", {"query": "release"})["messages"]] == [newer, hidden, old]
    assert [m["id"] for m in alice.call("search", {"query": "RELEASE", "group": "secret"})["messages"]] == [hidden]
    assert [m["id"] for m in alice.call("search", {"query": "release", "before": newer})["messages"]] == [hidden, old]
    assert [m["id"] for m in alice.call("search", {"query": "release", "limit": 1})["messages"]] == [newer]
    assert [m["id"] for m in alice.call("search", {"query": "rel* friday"})["messages"]] == [old], "prefix, and every word"
    assert bob.call("search", {"query": "hunter2"})["messages"] == []
    assert bob.call("search", {"query": "release", "group": "secret"})["error"]["code"] == "not_member"
    # Edits are searched as edited; deleted messages are not found, and their words leave the file.
    assert alice.call("edit-message", {"group": "g", "id": old, "message": "The launch is on Friday"})["ok"]
    assert [m["id"] for m in alice.call("search", {"query": "launch"})["messages"]] == [old]
    assert alice.call("search", {"query": "release", "group": "g"})["messages"][0]["id"] == newer
    unique = "zzyzxquokka"
    gone = send(alice, "g", f"{unique} secret word")
    assert [m["id"] for m in alice.call("search", {"query": unique})["messages"]] == [gone]
    def holding(word):
        """The projections' files (History's and the search index's, their write-ahead logs) that hold `word`."""
        return [path.name for path in (journal / "projections").iterdir() if path.is_file() and word.encode() in path.read_bytes()]
    assert "search.sqlite" in " ".join(holding(unique)) and "history.sqlite" in " ".join(holding(unique)), "the check can fail"
    assert alice.call("delete-message", {"group": "g", "id": gone})["ok"]
    # A search waits for the index to hold the deletion, merged and checkpointed.
    assert alice.call("search", {"query": unique})["messages"] == []
    assert alice.call("history", {"group": "g"})["ok"]
    assert holding(unique) == [], "the deleted words are erased"


def test_a_bad_search_is_invalid_payload_never_a_server_error(server, clients):
    alice = clients(server.url, "alice")
    alice.call("join-group", {"group": "g"})
    send(alice, "g", 'he said "NEAR" and AND OR NOT * col:umn')
    for query in ["", "   ", "*", '"', "()", "x" * 257, "a b c d e f g h i"]:
        answer = alice.call("search", {"query": query})
        assert answer["error"]["code"] == "invalid_payload", (query, answer)
    for payload in [{}, {"query": 5}, {"query": "a", "limit": 0}, {"query": "a", "limit": 51}, {"query": "a", "before": -1},
                    {"query": "a", "group": ""}]:
        assert alice.call("search", payload)["error"]["code"] == "invalid_payload", payload
    assert alice.call("search", {"query": "a", "group": "nowhere"})["error"]["code"] == "room_not_found"
    # FTS5's operators in a query are words like any.
    for query in ['"NEAR', "NEAR(said he)", "AND", "he OR", "col:umn", "NOT*", "said* -he", "^he"]:
        answer = alice.call("search", {"query": query})
        assert answer["ok"] and len(answer["messages"]) == 1, (query, answer)


def test_an_old_journal_rebuilt_has_nothing_read_no_reactions_or_replies_and_is_searched_whole(chatlog, tmp_path):
    """A journal of the events that existed before this revision (imported: the same bytes an
    older build wrote), its projections rebuilt; `chatlog search` beside a running server."""
    import json
    journal = tmp_path / "old"
    lines = [{"offset": 0, "timestamp_ms": 1, "type": "room_created", "actor": "alice", "room": "g", "name": "G", "private": False},
             {"offset": 1, "timestamp_ms": 2, "type": "member_joined", "actor": "bob", "room": "g"}]
    for n in range(300):
        lines.append({"offset": len(lines), "timestamp_ms": 3 + n, "type": "message_sent", "actor": "alice" if n % 3 else "bob",
                      "room": "g", "client_message_id": f"c{n}", "text": f"note {n} about @bob and café"})
    lines.append({"offset": len(lines), "timestamp_ms": 999, "type": "message_deleted", "actor": "alice", "room": "g", "message": 4})
    text = "".join(json.dumps(line) + "\n" for line in lines)
    assert run(chatlog, "journal", "import", "--journal", str(journal), stdin=text).returncode == 0
    result = run(chatlog, "projections", "rebuild", "--journal", str(journal), "--log-level", "error")
    assert result.returncode == 0, result.stderr
    server = Server(chatlog, journal).start()
    try:
        bob = Client(server.url, "bob")
        try:
            entry = groups(bob)["g"]
            # alice sent 200 of the 300 (n % 3 != 0), one of them (offset 4, n = 2) deleted.
            assert entry["last_read"] is None and entry["unread"] == 199 and entry["mentions"] == 199
            page = history(bob, "g")
            assert all("reactions" not in m and "reply_to" not in m for m in page)
            found = bob.call("search", {"query": "CAFE note", "limit": 50})["messages"]
            assert len(found) == 50 and found[0]["id"] == 301
            assert len(bob.call("search", {"query": "note 7"})["messages"]) == 1
        finally:
            bob.close()
        # Beside the running server, every room (an operator's view).
        beside = run(chatlog, "search", "--journal", str(journal), "about", "--limit", "3", "--format", "json")
        assert beside.returncode == 0, beside.stderr
        assert [json.loads(line)["offset"] for line in beside.stdout.splitlines()] == [301, 300, 299]
        bad = run(chatlog, "search", "--journal", str(journal), "*")
        assert bad.returncode != 0 and "the query has no words" in bad.stderr
        none = run(chatlog, "search", "--journal", str(journal), "nothing", "--room", "nowhere")
        assert none.returncode != 0 and "no room nowhere" in none.stderr
    finally:
        server.stop()
    # Stopped: the CLI brings History up to date itself.
    stopped = run(chatlog, "search", "--journal", str(journal), "note", "--room", "g", "--limit", "1")
    assert stopped.returncode == 0 and stopped.stdout.startswith("301  ")
