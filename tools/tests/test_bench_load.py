"""`chatlog bench load` keeps working (a small run, not a measurement): against chatlog and
against the python-socketio reference server of tools/bench-load.sh."""

import json
import subprocess
import sys
import time

from chatserver import Server
from conftest import ROOT, run


def load(chatlog, url, pid, *extra):
    result = run(chatlog, "bench", "load", "--url", url, "--server-pid", str(pid), "--rooms", "2", "--clients-per-room", "4",
                 "--senders", "3", "--messages", "20", "--window", "2", "--timeout", "30", *extra, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_bench_load_counts_every_delivery_against_chatlog(chatlog, journal):
    server = Server(chatlog, journal, "--events-per-second", "100000", "--events-burst", "100000").start()
    try:
        report = load(chatlog, server.url, server.process.pid, "--resume-events", "50", "--idle-connections", "20")
        # Room 0 has senders 0 and 2, room 1 sender 1; every client of a room gets its senders' messages.
        assert report["acked_sends"] == 60 and report["deliveries"] == (2 * 20 + 1 * 20) * 4
        assert report["lost"] == 0 and report["duplicated"] == 0
        assert report["resume_seconds"] > 0 and report["idle_bytes_per_connection"] >= 0
        assert report["server_cpu_s"] is not None
    finally:
        server.stop()


def test_held_idle_connections_are_reported_and_a_drop_fails_the_run(chatlog, journal):
    server = Server(chatlog, journal).start()
    try:
        report = load(chatlog, server.url, server.process.pid, "--messages", "0", "--idle-connections", "20",
                      "--idle-hold-seconds", "1")
        assert report["idle_bytes_per_connection"] >= 0
        # The server goes away while the connections are held: the run says so and fails.
        bench = subprocess.Popen([chatlog, "bench", "load", "--url", server.url, "--server-pid", str(server.process.pid),
                                  "--senders", "0", "--messages", "0", "--idle-connections", "20", "--idle-hold-seconds", "20"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        output = ""
        while "idle connections (" not in output and time.monotonic() < deadline:
            output += bench.stdout.readline()
        assert "idle connections (" in output, output
        server.stop()
        out, err = bench.communicate(timeout=60)
        assert bench.returncode != 0
        assert "0 still connected, 20 dropped" in out and "the server dropped 20 of 20 idle connections" in err, out + err
    finally:
        server.stop()


def test_idle_connections_the_server_refuses_fail_the_run_saying_which(chatlog, journal):
    # Ten Socket.IO sessions at most: the eleventh handshake is refused and its connection closed.
    server = Server(chatlog, journal, "--connections-max", "10").start()
    try:
        bench = run(chatlog, "bench", "load", "--url", server.url, "--server-pid", str(server.process.pid),
                    "--senders", "0", "--messages", "0", "--idle-connections", "30", timeout=120)
        assert bench.returncode != 0
        assert "an idle connection among numbers 1–30 (of 30) failed before it joined its room" in bench.stderr, bench.stderr
        assert "Usage:" not in bench.stderr  # a failed run, not a usage error
    finally:
        server.stop()


def test_the_reference_server_speaks_the_same_protocol(chatlog, tmp_path):
    process = subprocess.Popen([sys.executable, str(ROOT / "tools" / "reference-server" / "server.py"), "--port", "0",
                                "--sqlite", str(tmp_path / "reference.db")], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("listening on "), line
        report = load(chatlog, line.split()[-1], process.pid)
        assert report["acked_sends"] == 60 and report["deliveries"] == 240
        assert report["lost"] == 0 and report["duplicated"] == 0
    finally:
        process.terminate()
        process.wait(timeout=10)
