"""`chatlog backup` (docs/operations.md, "Backups"): a copy of a running server's journal, from
the server (`--server`, the replication protocol) or from its directory beside it (`--journal`),
that is itself a journal: restored by serving it, it holds the same rooms and messages as the
source did at the copy's end. Tested by restoring and comparing, with messages being sent while
the copy is made, and with a source whose retention deleted the start."""

import base64
import json
import os
import threading
from pathlib import Path

import requests

from chatserver import Client, Server, api, page, private_room, rooms_of
from conftest import run
from test_replication import SEGMENT_BYTES, files, leader, secret, send, servers, standby, status, wait_until  # noqa: F401


def backup(chatlog, *args: str):
    return run(chatlog, "backup", *args, "--format", "json", timeout=120)


def backed_up(chatlog, *args: str) -> dict:
    result = backup(chatlog, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def restored(chatlog, directory: Path, servers) -> Server:
    assert run(chatlog, "journal", "verify", "--journal", str(directory)).returncode == 0
    return servers(Server(chatlog, directory))


def test_a_backup_of_a_small_journal_restores_every_room_and_message(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret, "--dev"))
    private_room(lead.url)
    send(lead.url, 30)
    for how in (["--server", lead.url, "--replication-secret-file", str(secret)], ["--journal", str(tmp_path / "leader")]):
        target = tmp_path / f"backup-{how[0][2:]}"
        report = backed_up(chatlog, *how, "--to", str(target))
        end = status(lead.url)["committed_offset"]
        assert report["first_offset"] == 0 and report["end_offset"] == end, report
        assert not (tmp_path / f"{target.name}.partial").exists()
        copy = restored(chatlog, target, servers)
        for user in ("alice", "bob", "carol"):
            assert rooms_of(copy.url, user) == rooms_of(lead.url, user)
        for room in ("g", "p"):
            assert page(copy.url, room, end) == page(lead.url, room, end)
        assert api(copy.url, "/api/rooms/p/members")["invited"] == ["bob"]
        assert page(copy.url, "p", end) == [(page(lead.url, "p", end)[0][0], "kept, edited"), (page(lead.url, "p", end)[1][0], None)]
        # It is a journal like any other: it takes the next message at the source's end.
        response = requests.post(copy.url + "/api/rooms/g/messages", json={"message": "after the restore"},
                                 headers={"X-Chatlog-User": "alice"}, timeout=10)
        assert response.status_code == 201 and response.json()["id"] == end
        assert copy.stop() == 0
    # A backup reads like a standby but is none: the leader lists no standby.
    assert status(lead.url)["standbys"] == []


def test_a_backup_made_while_messages_are_sent_from_a_journal_retention_cut_restores_from_its_snapshot(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret, "--dev", "--segment-bytes", SEGMENT_BYTES,
                          "--retention-bytes", SEGMENT_BYTES, "--snapshot-interval", "200ms"))
    private_room(lead.url)
    send(lead.url, 3000, size=4000)
    wait_until(lambda: not (tmp_path / "leader" / ("0" * 20 + ".log")).exists(),
               what="retention deleting the first segment (once a snapshot covers it)")

    # Messages keep coming while both backups are made.
    stop = threading.Event()
    sent: list[int] = []

    def writer():
        while not stop.is_set():
            sent.extend(send(lead.url, 20, room="live"))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: len(sent) >= 20, what="the writer under way")
        reports = {how[0]: backed_up(chatlog, *how, "--to", str(tmp_path / f"backup-{how[0][2:]}"))
                   for how in (["--server", lead.url, "--replication-secret-file", str(secret)],
                               ["--journal", str(tmp_path / "leader")])}
        count = len(sent)
        wait_until(lambda: len(sent) >= count + 20, what="more sends after the backups")
    finally:
        stop.set()
        thread.join(timeout=60)
    end = status(lead.url)["committed_offset"]
    source_files = files(tmp_path / "leader")
    for how, report in reports.items():
        target = tmp_path / f"backup-{how[2:]}"
        first = report["first_offset"]
        assert first > 0 and first == int(min(name for name in source_files if name.endswith(".log"))[:20]), report
        assert report["snapshot_offset"] is not None and first <= report["snapshot_offset"] <= report["end_offset"] < end
        # Byte for byte: the sealed segments whole, the active one a prefix of the source's.
        copied = sorted(name for name in files(target) if name.endswith(".log"))
        for name in copied[:-1]:
            assert (target / name).read_bytes() == (tmp_path / "leader" / name).read_bytes(), name
        last = (target / copied[-1]).read_bytes()
        assert (tmp_path / "leader" / copied[-1]).read_bytes()[:len(last)] == last
        copy = restored(chatlog, target, servers)
        # The rooms, from the snapshot (their start is gone from the journal), and the messages
        # from the copy's first offset on, as the source had them.
        for user in ("alice", "bob", "carol"):
            assert rooms_of(copy.url, user) == rooms_of(lead.url, user)
        assert api(copy.url, "/api/rooms/p/members")["members"] == ["alice", "carol"]
        copied_live = page(copy.url, "live", report["end_offset"])
        assert copied_live and copied_live == page(lead.url, "live", report["end_offset"])
        assert page(copy.url, "g", report["end_offset"]) == page(lead.url, "g", report["end_offset"])
        assert all(message_id >= first for message_id, _ in page(copy.url, "g", report["end_offset"]))
        assert copy.stop() == 0


def test_backup_refuses_with_what_to_do_and_leaves_nothing_behind(chatlog, tmp_path, secret, servers):
    lead = servers(leader(chatlog, tmp_path / "leader", secret))
    send(lead.url, 5)
    marker = base64.b64encode(os.urandom(1500)).decode()
    client = Client(lead.url, "alice", transports=["websocket"])
    assert client.call("send-group-message", {"group": "g", "message": marker, "created": 1})["ok"]
    client.close()
    send(lead.url, 5)
    status_end = status(lead.url)["committed_offset"]
    follower = servers(standby(chatlog, tmp_path / "standby", lead.url, secret))
    wait_until(lambda: status(follower.url)["committed_offset"] == status(lead.url)["committed_offset"], what="catch-up")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("mine")
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("a-secret-that-is-not-the-leaders\n")
    target = str(tmp_path / "new")
    cases = [
        (["--journal", str(tmp_path / "leader"), "--to", str(taken)], 2, "is not empty: give a new directory"),
        (["--server", follower.url, "--replication-secret-file", str(secret), "--to", target], 1, "give the leader's URL"),
        (["--server", lead.url, "--replication-secret-file", str(wrong), "--to", target], 1, "unauthorized"),
        (["--server", "http://127.0.0.1:1", "--replication-secret-file", str(secret), "--to", target], 2, "connection refused"),
        (["--journal", str(tmp_path / "nothing"), "--to", target], 2, "no journal at"),
        (["--server", lead.url, "--journal", str(tmp_path / "leader"), "--to", target], 64, "give either --server"),
    ]
    for args, code, words in cases:
        result = backup(chatlog, *args)
        assert result.returncode == code and words in result.stderr, (args, result.returncode, result.stderr)
        assert result.stderr.startswith("chatlog backup: ") or code == 64, result.stderr
    assert (taken / "file").read_text() == "mine"
    assert not Path(target).exists() and not Path(target + ".partial").exists()

    # Damage is refused, and no backup directory is left to be mistaken for one; a torn tail (a
    # batch half written when a server died) is left out, as recovery would cut it.
    assert follower.stop() == 0 and lead.stop() == 0
    segment = tmp_path / "leader" / ("0" * 20 + ".log")
    whole = segment.read_bytes()
    at = whole.index(marker.encode()) + 10  # inside a message's text (LZ4 keeps random text as literals)
    segment.write_bytes(whole[:at] + bytes([whole[at] ^ 0xFF]) + whole[at + 1:])
    result = backup(chatlog, "--journal", str(tmp_path / "leader"), "--to", target)
    assert result.returncode == 1 and "the journal is damaged" in result.stderr and "CRC-32C mismatch" in result.stderr, result.stderr
    assert not Path(target).exists() and not Path(target + ".partial").exists()
    segment.write_bytes(whole[:-10])
    report = backed_up(chatlog, "--journal", str(tmp_path / "leader"), "--to", target)
    assert 0 < report["end_offset"] < status_end, report
