"""The `chatlog journal` and `chatlog bench journal` commands, run as a user would."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import run


def append(chatlog: str, journal: Path, lines: list[str]) -> list[int]:
    result = run(chatlog, "journal", "append", "--journal", str(journal), "--log-level", "error",
                 stdin="".join(line + "\n" for line in lines))
    assert result.returncode == 0, result.stderr
    return [int(line) for line in result.stdout.split()]


def segment(journal: Path) -> Path:
    segments = sorted(journal.glob("*.log"))
    assert segments, "the journal has a segment"
    return segments[-1]


def test_append_assigns_consecutive_offsets_across_runs(chatlog, journal):
    assert append(chatlog, journal, ["hello", "world"]) == [0, 1]
    assert append(chatlog, journal, ["again"]) == [2]


def test_verify_is_clean_and_exits_zero_on_a_good_journal(chatlog, journal):
    append(chatlog, journal, [f"message {n}" for n in range(100)])
    result = run(chatlog, "journal", "verify", "--journal", str(journal))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("clean: 1 segments")
    report = json.loads(run(chatlog, "journal", "verify", "--journal", str(journal), "--format", "json").stdout)
    assert report["clean"] is True and report["records"] == 100 and report["problems"] == []


def test_verify_names_file_position_and_offset_of_damage_and_changes_nothing(chatlog, journal):
    append(chatlog, journal, ["first batch"])
    append(chatlog, journal, ["second batch"])
    path = segment(journal)
    data = bytearray(path.read_bytes())
    second = data.rfind(b"CHLB")  # the second batch's magic
    assert second > 0
    data[second + 60] ^= 0x01
    path.write_bytes(bytes(data))
    before = path.read_bytes()

    result = run(chatlog, "journal", "verify", "--journal", str(journal))
    assert result.returncode == 1
    problem = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
    assert len(problem) == 1
    assert f"{path} byte {second} offset 1:" in problem[0]
    assert "CRC-32C mismatch" in problem[0]
    assert path.read_bytes() == before, "verify must not modify anything"


def test_repair_cuts_a_torn_tail_and_reports_it(chatlog, journal):
    append(chatlog, journal, ["kept"])
    append(chatlog, journal, ["torn away"])
    path = segment(journal)
    data = path.read_bytes()
    second = data.rfind(b"CHLB")
    path.write_bytes(data[: len(data) - 3])

    assert run(chatlog, "journal", "verify", "--journal", str(journal)).returncode == 1
    result = run(chatlog, "journal", "repair", "--journal", str(journal), "--log-level", "error")
    assert result.returncode == 0, result.stderr
    assert f"cut {len(data) - 3 - second} bytes from {path} at byte {second} (offset 1 onward)" in result.stdout
    assert "journal ends at offset 1" in result.stdout
    broken = list(journal.glob("*.broken"))
    assert len(broken) == 1 and broken[0].read_bytes() == data[second : len(data) - 3]
    assert run(chatlog, "journal", "verify", "--journal", str(journal)).returncode == 0
    assert append(chatlog, journal, ["after repair"]) == [1]


def test_repair_refuses_damage_in_a_sealed_segment(chatlog, journal):
    append(chatlog, journal, [f"m{n}" for n in range(3)])
    first = segment(journal)
    data = bytearray(first.read_bytes())
    second_batch = data.find(b"CHLB", 4)
    data[second_batch + 60] ^= 0xFF
    first.write_bytes(bytes(data))
    # An empty segment starting where the first ends makes the first one sealed.
    (journal / "00000000000000000003.log").write_bytes(b"")
    result = run(chatlog, "journal", "repair", "--journal", str(journal), "--log-level", "error")
    assert result.returncode != 0
    assert f"{first} at byte {second_batch} (offset 1)" in result.stderr
    assert first.read_bytes() == bytes(data), "a sealed segment is never cut"


def test_a_second_writer_process_fails_naming_the_holder(chatlog, journal):
    holder = subprocess.Popen([chatlog, "journal", "append", "--journal", str(journal), "--log-level", "error"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write("held\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "0"  # the holder has the lock now
        # Every command that needs the lock says so alike: one line naming the holder, exit 2.
        for command in (["journal", "append"], ["journal", "repair"], ["journal", "truncate", "--to", "0"],
                        ["journal", "import"], ["projections", "rebuild"], ["promote"]):
            result = run(chatlog, *command, "--journal", str(journal), "--log-level", "error", stdin="x\n")
            assert result.returncode == 2, (command, result.stderr)
            assert result.stderr.startswith(f"chatlog {' '.join(c for c in command if not c.startswith('-') and not c.isdigit())}: "
                                            f"the journal {journal} is in use by process {holder.pid}"), (command, result.stderr)
            assert len(result.stderr.splitlines()) == 1 and result.stdout == "", (command, result.stderr)
    finally:
        if holder.stdin:
            holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    assert append(chatlog, journal, ["after"]) == [1]


def test_a_killed_writer_leaves_a_journal_the_next_writer_opens(chatlog, journal):
    holder = subprocess.Popen([chatlog, "journal", "append", "--journal", str(journal), "--log-level", "error"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    for n in range(5):
        holder.stdin.write(f"line {n}\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == str(n)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    # Every acknowledged line survived; the stale lock file does not block the next writer.
    assert append(chatlog, journal, ["after crash"]) == [5]


def test_inspect_shows_batches_and_records_as_text_and_json(chatlog, journal):
    append(chatlog, journal, ["alpha", "beta"])
    append(chatlog, journal, ["gamma"])
    text = run(chatlog, "journal", "inspect", "--journal", str(journal)).stdout
    assert "segment 00000000000000000000.log base 0" in text
    assert "batch @0 offsets 0...0 (1 records)" in text
    assert '    0 "alpha"' in text and '    2 "gamma"' in text
    lines = run(chatlog, "journal", "inspect", "--journal", str(journal), "--format", "json", "--from", "1").stdout.splitlines()
    batches = [json.loads(line) for line in lines]
    assert [record["text"] for batch in batches for record in batch["records"]] == ["beta", "gamma"]
    assert batches[0]["base_offset"] == 1 and batches[0]["codec"] in ("lz4", "none")
    limited = run(chatlog, "journal", "inspect", "--journal", str(journal), "--format", "json", "--limit", "1").stdout
    assert [r["text"] for b in map(json.loads, limited.splitlines()) for r in b["records"]] == ["alpha"]


def test_stats_reports_totals(chatlog, journal):
    append(chatlog, journal, [f"message number {n} in the general room" for n in range(500)])
    stats = json.loads(run(chatlog, "journal", "stats", "--journal", str(journal), "--format", "json").stdout)
    assert stats["events"] == 500 and stats["first_offset"] == 0 and stats["last_offset"] == 499
    assert stats["segments"] == 1 and stats["bytes_on_disk"] > 0 and stats["problems"] == 0


def test_commands_on_a_missing_journal_fail_with_one_clear_line(chatlog, tmp_path):
    result = run(chatlog, "journal", "verify", "--journal", str(tmp_path / "nope"))
    assert result.returncode != 0
    assert "not a journal directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bench_journal_prints_its_figures_as_a_final_json_line(chatlog, tmp_path):
    result = run(chatlog, "bench", "journal", "--events", "20000", "--producers", "8", "--directory",
                 str(tmp_path / "bench"), timeout=120)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("append_events_per_s", "append_mb_per_s", "read_events_per_s", "sqlite_events_per_s",
                "append_vs_sqlite", "compression_ratio", "events"):
        assert key in figures, key
    assert figures["events"] == 20000 and figures["compression_ratio"] > 1


def test_a_failed_write_stops_appends_and_loses_nothing_acknowledged(chatlog, journal):
    """Fail-stop: with the file size limited, the writer's pwrite fails (EFBIG); the command
    reports the storage failure, and every offset it printed is in the journal afterwards."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    lines = "".join(f"message {n} " + "x" * 90 + "\n" for n in range(2000))
    result = subprocess.run([chatlog, "journal", "append", "--journal", str(journal), "--log-level", "critical"],
                            input=lines, capture_output=True, text=True, timeout=60, preexec_fn=limit_file_size)
    assert result.returncode != 0
    assert "stopped accepting appends after a storage failure" in result.stderr
    assert "File too large" in result.stderr
    acknowledged = [int(line) for line in result.stdout.split()]
    assert acknowledged == list(range(len(acknowledged))) and len(acknowledged) > 10

    repaired = run(chatlog, "journal", "repair", "--journal", str(journal), "--log-level", "error")
    assert repaired.returncode == 0, repaired.stderr
    stats = json.loads(run(chatlog, "journal", "stats", "--journal", str(journal), "--format", "json").stdout)
    assert stats["events"] >= len(acknowledged)
    records = [json.loads(line) for line in run(chatlog, "journal", "inspect", "--journal", str(journal),
                                                   "--format", "json", "--limit", "100000").stdout.splitlines()]
    texts = [r["text"] for batch in records for r in batch["records"]]
    assert texts[: len(acknowledged)] == [f"message {n} " + "x" * 90 for n in acknowledged]
