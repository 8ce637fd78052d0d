"""Shared fixtures for the CLI tests: the chatlog binary and a scratch journal directory."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _servers_of_this_test():
    from chatserver import Server
    Server.started.clear()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report shows each server it started: running or how it ended, and the
    end of its log (a server that died under a test is otherwise invisible)."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    from chatserver import Server
    for index, server in enumerate(Server.started):
        process = server.process
        state = "running" if process.poll() is None else f"exited with {process.returncode}"
        try:
            lines = server.stderr_path.read_text(errors="replace").splitlines()[-40:]
        except OSError as error:
            lines = [f"(no log: {error})"]
        report.sections.append((f"chatlog server {index} ({state}, pid {process.pid}, {server.url})",
                                "\n".join(lines)))


@pytest.fixture(scope="session")
def chatlog() -> str:
    path = os.environ.get("CHATLOG", str(ROOT / ".build" / "debug" / "chatlog"))
    if not Path(path).is_file():
        pytest.fail(f"chatlog binary not found at {path}; run `swift build` first or set CHATLOG")
    # Absolute: tests run it from other directories and write it into files (a unit, a link).
    return str(Path(path).resolve())


@pytest.fixture()
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def run(chatlog: str, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs chatlog with a time limit and returns the finished process (never raises on exit code)."""
    return subprocess.run(
        [chatlog, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_pki(directory: Path, subject: str = "127.0.0.1") -> Path:
    """A certificate authority (ca.pem) and a server certificate it signed (server.pem,
    server.key) for 127.0.0.1 and localhost, made with the openssl CLI; another CA too
    (other.pem)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)
    directory.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=chatlog test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={subject}")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem",
            "-days", "2", "-extfile", "san.ext")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.pem", "-days", "2",
            "-subj", "/CN=another CA")
    return directory


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def etcdctl(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["etcdctl", "--endpoints", url, *args], input=stdin, capture_output=True, text=True,
                          timeout=20, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})


@pytest.fixture()
def etcd(tmp_path: Path):
    """A real single-member etcd (Debian's etcd-server) on free ports, removed afterwards."""
    import time
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    process = subprocess.Popen(
        ["etcd", "--name", "t", "--data-dir", str(tmp_path / "etcd"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"t=http://127.0.0.1:{peer}", "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while etcdctl(url, "endpoint", "health").returncode != 0:
            assert time.monotonic() < deadline, "etcd did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.kill()
        process.wait()


def wait_until(predicate, timeout: float = 30, what: str = "condition"):
    """Polls `predicate` (an exception counts as not yet: a server still starting) until it holds."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")
