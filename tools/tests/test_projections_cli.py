"""Chat events through the CLI: import/export, rooms, history, projections rebuild, crash resume."""

import json
import random
import signal
import subprocess
import time
from pathlib import Path

from conftest import run

T0 = 1_795_000_000_000


def event(offset, type_, actor, room, **fields):
    line = {"offset": offset, "timestamp_ms": T0 + offset, "type": type_, "actor": actor, "room": room}
    line.update(fields)
    return line


def workload(messages: int = 50) -> list[dict]:
    lines = [
        event(0, "room_created", "alice", "general", name="General", private=False),
        event(1, "member_joined", "bob", "general"),
        event(2, "room_created", "alice", "secret", name="Secret", private=True),
        event(3, "member_invited", "alice", "secret", user="bob"),
        event(4, "member_joined", "bob", "secret"),
    ]
    for n in range(messages):
        offset = len(lines)
        lines.append(event(offset, "message_sent", "bob" if n % 2 else "alice", "general" if n % 3 else "secret",
                           client_message_id=f"c{n}", text=f"message {n} ☕", client_created_ms=T0))
    lines.append(event(len(lines), "message_edited", "alice", "secret", message=5, text="edited first"))
    lines.append(event(len(lines), "message_deleted", "alice", "general", message=6))
    return lines


def import_lines(chatlog, journal, lines, *extra):
    text = "".join(json.dumps(line) + "\n" for line in lines)
    return run(chatlog, "journal", "import", "--journal", str(journal), "--log-level", "error", *extra, stdin=text)


def export(chatlog, journal, *extra) -> list[dict]:
    result = run(chatlog, "journal", "export", "--journal", str(journal), *extra)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_export_then_import_into_an_empty_journal_reproduces_the_events(chatlog, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    lines = workload()
    result = import_lines(chatlog, first, lines)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"imported {len(lines)} events"
    exported = export(chatlog, first)
    assert [e["offset"] for e in exported] == list(range(len(lines)))
    assert exported == [{k: v for k, v in line.items()} for line in lines]

    assert import_lines(chatlog, second, exported).returncode == 0
    assert export(chatlog, second) == exported
    assert export(chatlog, first, "--room", "secret") == [e for e in exported if e["room"] == "secret"]
    assert export(chatlog, first, "--from", "40") == exported[40:]


def test_import_stops_at_the_first_invalid_line_and_names_it(chatlog, tmp_path):
    journal = tmp_path / "journal"
    lines = workload(5)
    lines.insert(3, event(99, "message_sent", "carol", "secret", client_message_id="x", text="let me in"))
    lines.append(event(100, "message_sent", "alice", "general", client_message_id="late", text="after"))
    result = import_lines(chatlog, journal, lines)
    assert result.returncode == 1
    assert "stopped at line 4: not_member:" in result.stderr
    assert result.stdout.strip() == "imported 3 events, 1 invalid lines"
    assert len(export(chatlog, journal)) == 3, "nothing after the bad line was appended"


def test_import_with_skip_invalid_reports_every_bad_line(chatlog, tmp_path):
    journal = tmp_path / "journal"
    lines = [json.dumps(line) for line in workload(5)]
    lines.insert(2, "{not json")
    lines.insert(4, json.dumps(event(50, "member_joined", "mallory", "secret")))
    lines.append(json.dumps(event(51, "teleported", "alice", "general")))
    result = run(chatlog, "journal", "import", "--journal", str(journal), "--skip-invalid", "--log-level", "error",
                 stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped line")]
    assert [line.split(":")[0] for line in skipped] == ["skipped line 3", "skipped line 5", "skipped line 15"]
    assert "not_invited" in skipped[1] and "unknown type" in skipped[2]
    assert len(export(chatlog, journal)) == len(workload(5))


def test_a_duplicate_client_message_id_is_refused_on_import(chatlog, tmp_path):
    journal = tmp_path / "journal"
    lines = workload(2)
    lines.append(dict(lines[-3], offset=len(lines)))  # the same message_sent again
    result = import_lines(chatlog, journal, lines)
    assert result.returncode == 1 and "duplicate client message id" in result.stderr


def test_rooms_and_history_show_the_projections(chatlog, tmp_path):
    journal = tmp_path / "journal"
    assert import_lines(chatlog, journal, workload()).returncode == 0
    rooms = [json.loads(line) for line in run(chatlog, "rooms", "--journal", str(journal), "--format", "json",
                                               "--log-level", "error").stdout.splitlines()]
    assert rooms == [
        {"room": "general", "name": "General", "owner": "alice", "private": False, "members": ["alice", "bob"], "invited": []},
        {"room": "secret", "name": "Secret", "owner": "alice", "private": True, "members": ["alice", "bob"], "invited": []},
    ]
    page = [json.loads(line) for line in run(chatlog, "history", "--journal", str(journal), "--room", "general",
                                              "--limit", "5", "--format", "json", "--log-level", "error").stdout.splitlines()]
    assert len(page) == 5 and page == sorted(page, key=lambda m: m["offset"])
    older = run(chatlog, "history", "--journal", str(journal), "--room", "general", "--before", str(page[0]["offset"]),
                "--limit", "200", "--log-level", "error").stdout
    assert "(deleted)" in older, "message 6 was deleted"
    assert '"message 1 ☕"' not in older and "message 2 ☕" in older
    bad = run(chatlog, "history", "--journal", str(journal), "--room", "general", "--limit", "201")
    assert bad.returncode != 0 and "--limit must be in 1...200" in bad.stderr


def test_rebuild_prints_a_summary_and_gives_the_same_answers(chatlog, tmp_path):
    journal = tmp_path / "journal"
    assert import_lines(chatlog, journal, workload(300)).returncode == 0
    before = run(chatlog, "history", "--journal", str(journal), "--room", "general", "--limit", "200", "--format", "json").stdout
    result = run(chatlog, "projections", "rebuild", "--journal", str(journal), "--log-level", "error")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("rebuilt history, room-state and search from 307 events in ")
    assert "300 messages in history" in result.stdout
    after = run(chatlog, "history", "--journal", str(journal), "--room", "general", "--limit", "200", "--format", "json").stdout
    assert after == before
    only = run(chatlog, "projections", "rebuild", "--journal", str(journal), "--only", "room-state", "--log-level", "error")
    assert only.stdout.startswith("rebuilt room-state from 307 events")
    # The search index alone, then with History (side by side): the same answers.
    found = run(chatlog, "search", "--journal", str(journal), "message", "--limit", "50", "--format", "json").stdout
    assert len(found.splitlines()) == 50
    search = run(chatlog, "projections", "rebuild", "--journal", str(journal), "--only", "search", "--log-level", "error")
    assert search.stdout.startswith("rebuilt search from 307 events"), search.stdout + search.stderr
    assert run(chatlog, "search", "--journal", str(journal), "message", "--limit", "50", "--format", "json").stdout == found
    both = run(chatlog, "projections", "rebuild", "--journal", str(journal), "--only", "search", "--only", "history", "--log-level", "error")
    assert both.stdout.startswith("rebuilt history and search from 307 events"), both.stdout + both.stderr
    assert run(chatlog, "search", "--journal", str(journal), "message", "--limit", "50", "--format", "json").stdout == found


def test_history_resumes_exactly_after_being_killed_mid_rebuild(chatlog, tmp_path):
    """kill -9 the process while it applies History transactions, repeatedly; each restart
    resumes from the checkpoint stored with the rows, and the end result equals a clean build."""
    journal = tmp_path / "journal"
    lines = workload(0)[:5]  # rooms and members, no edits
    for n in range(60_000):
        lines.append(event(len(lines), "message_sent", "alice", "general", client_message_id=f"m{n}", text=f"message {n} " + "x" * 40))
    assert import_lines(chatlog, journal, lines, "--append-batch", "2000").returncode == 0

    rng = random.Random(4)
    kills = 0
    for attempt in range(30):
        process = subprocess.Popen([chatlog, "history", "--journal", str(journal), "--room", "general", "--limit", "1",
                                    "--log-level", "error"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.05, 0.4))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
        if process.returncode == 0:
            break
    assert kills >= 1, "the history catch-up finished before it could be killed once"

    resumed = run(chatlog, "history", "--journal", str(journal), "--room", "general", "--limit", "200", "--format", "json",
                  "--log-level", "error")
    assert resumed.returncode == 0, resumed.stderr
    clean = tmp_path / "clean"
    assert import_lines(chatlog, clean, lines, "--append-batch", "5000").returncode == 0
    expected = run(chatlog, "history", "--journal", str(clean), "--room", "general", "--limit", "200", "--format", "json",
                   "--log-level", "error")
    assert resumed.stdout == expected.stdout
    # Every message is there exactly once.
    import sqlite3
    for directory in (journal, clean):
        db = sqlite3.connect(directory / "projections" / "history.sqlite")
        # Blocks of one room tile the offsets without overlap: no duplicate, no gap.
        blocks = db.execute("SELECT first_offset, last_offset, count FROM blocks ORDER BY first_offset").fetchall()
        assert sum(count for _, _, count in blocks) == 60_000
        assert blocks[0][0] == 5 and blocks[-1][1] == 60_004
        assert all(last - first + 1 == count for first, last, count in blocks)
        assert all(blocks[i][1] < blocks[i + 1][0] for i in range(len(blocks) - 1))
        assert db.execute("SELECT next_offset FROM checkpoint").fetchone() == (60_005,)
        db.close()


def test_bench_replay_prints_its_figures_as_a_final_json_line(chatlog, tmp_path):
    result = run(chatlog, "bench", "replay", "--events", "20000", "--rooms", "50", "--users", "300",
                 "--directory", str(tmp_path / "bench"), timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("room_state_events_per_s", "history_messages_per_s", "startup_with_snapshot_s",
                "history_rebuild_peak_rss_mb", "events", "journal_read_events_per_s"):
        assert key in figures, key
    assert figures["events"] == 20000 and figures["history_rebuild_peak_rss_mb"] > 1
