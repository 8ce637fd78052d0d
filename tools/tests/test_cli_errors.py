"""What a user sees when a command cannot do what it was asked (docs/operations.md, "Exit codes"):
one line on standard error, `chatlog COMMAND: what is wrong and what to do`, no usage block and
no NIO or decoder dump, and an exit code a script can tell apart: 1 the answer is no, 2 it could
not run, 64 the command line is wrong."""

import socket
import subprocess
from pathlib import Path

import requests

from chatserver import Server
from conftest import free_port, run


def one_line(result: subprocess.CompletedProcess, code: int, prefix: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


def test_a_port_in_use_is_named_before_anything_is_opened(chatlog, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(chatlog, "serve", "--journal", str(tmp_path / "j"), "--port", str(port), "--dev")
    one_line(result, 2, f"chatlog serve: port {port} on 127.0.0.1 is in use by another process: stop it, or choose another --port")
    assert not (tmp_path / "j").exists(), "nothing is created when the server cannot listen"


def test_an_address_not_of_this_machine_is_named(chatlog, tmp_path: Path) -> None:
    result = run(chatlog, "serve", "--journal", str(tmp_path / "j"), "--host", "192.0.2.1", "--port", str(free_port()), "--dev")
    one_line(result, 2, "chatlog serve: 192.0.2.1 is not an address of this machine")


def test_a_node_that_is_not_running_or_does_not_exist_is_unreachable(chatlog, tmp_path: Path) -> None:
    secret = tmp_path / "replication.secret"
    secret.write_text("s" * 32 + "\n")
    url = f"http://127.0.0.1:{free_port()}"
    for command in (["replication", "status"], ["promote"]):
        line = one_line(run(chatlog, *command, "--server", url, "--replication-secret-file", str(secret)), 2,
                        f"chatlog {' '.join(command)}: cannot reach {url}: ")
        assert "connection refused (is the server running, on that port?)" in line
    line = one_line(run(chatlog, "replication", "status", "--server", "http://no-such-host.invalid:3000",
                        "--replication-secret-file", str(secret)), 2, "chatlog replication status: cannot reach")
    assert "unknown host no-such-host.invalid" in line


def test_a_wrong_secret_is_refused_with_what_to_do(chatlog, tmp_path: Path) -> None:
    secret = tmp_path / "replication.secret"
    secret.write_text("s" * 32 + "\n")
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("w" * 32 + "\n")
    server = Server(chatlog, tmp_path / "j", "--replication-secret-file", str(secret)).start()
    try:
        line = one_line(run(chatlog, "replication", "status", "--server", server.url, "--replication-secret-file", str(wrong)),
                        1, f"chatlog replication status: {server.url}/api/replication answered 401 unauthorized: ")
        assert line.endswith("(use the replication secret file the server was started with)")
    finally:
        server.stop()


def test_history_of_a_room_nobody_created_exits_1_and_an_empty_room_says_so(chatlog, tmp_path: Path) -> None:
    journal = tmp_path / "j"
    server = Server(chatlog, journal).start()
    try:
        created = requests.post(server.url + "/api/rooms", json={"group": "quiet"}, headers={"X-Chatlog-User": "alice"}, timeout=5)
        assert created.status_code == 201
        # Beside the running server, and after it stopped: the same answers.
        for running in (True, False):
            if not running:
                server.stop()
            missing = run(chatlog, "history", "--journal", str(journal), "--room", "nosuch", "--log-level", "error")
            one_line(missing, 1, f"chatlog history: no room nosuch in the journal (chatlog rooms --journal {journal} lists them)")
            empty = run(chatlog, "history", "--journal", str(journal), "--room", "quiet", "--log-level", "error")
            assert empty.returncode == 0 and empty.stdout == "" and empty.stderr == "no messages in quiet\n", empty.stderr
    finally:
        if server.process.poll() is None:
            server.stop()


def test_a_missing_journal_or_token_secret_says_what_creates_it(chatlog, tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    for command in (["rooms"], ["journal", "repair"], ["projections", "rebuild"], ["journal", "truncate", "--to", "0"]):
        line = one_line(run(chatlog, *command, "--journal", str(missing)), 2, f"chatlog {command[0]}")
        assert f"no journal at {missing}" in line, line
    # A --dev server checks no tokens and writes no secret: the message says so.
    dev = tmp_path / "dev"
    Server(chatlog, dev).start().stop()
    line = one_line(run(chatlog, "token", "issue", "alice", "--journal", str(dev)), 2, "chatlog token issue: ")
    assert f"{dev}/auth.secret" in line and "without --dev" in line and "--secret-file" in line


def test_a_wrong_flag_is_a_usage_error_64_with_the_usage(chatlog) -> None:
    result = run(chatlog, "history", "--limit", "0", "--room", "r")
    assert result.returncode == 64 and "--limit must be in 1...200" in result.stderr and "Usage:" in result.stderr


def test_serve_refuses_a_snapshot_interval_or_login_url_it_cannot_use(chatlog, tmp_path: Path) -> None:
    journal = str(tmp_path / "journal")
    for args, words in [(["--snapshot-interval", "5ms"], "--snapshot-interval is a number followed by ms, s or m, at least 100ms"),
                        (["--snapshot-interval", "soon"], "--snapshot-interval is a number"),
                        (["--web-login-url", "ftp://login.example.com"], "--web-login-url must be an http or https URL"),
                        (["--web-login-url", "https://login.example.com", "--dev"], "--web-login-url is for token mode")]:
        result = run(chatlog, "serve", "--journal", journal, "--port", "0", *args)
        assert result.returncode == 64 and words in result.stderr, (args, result.returncode, result.stderr)
    assert not (tmp_path / "journal").exists(), "nothing is created before the settings are checked"
