"""HTTPS (`serve --tls-cert/--tls-key`): clients, replication and forwarded commands over TLS,
with a certificate authority and certificates this test makes with the openssl CLI."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import socketio

from chatserver import Server
from conftest import free_port, make_pki, run, wait_until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


@pytest.fixture()
def pki(tmp_path: Path) -> Path:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost; another CA too."""
    return make_pki(tmp_path / "pki")


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "replication.secret"
    path.write_text(os.urandom(24).hex() + "\n")
    return path


def client(url: str, ca: Path, username: str, transports: list[str]) -> socketio.Client:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the CA below
    session.verify = str(ca)
    sio = socketio.Client(reconnection=False, http_session=session)
    sio.connect(url, auth={"username": username}, transports=transports, wait_timeout=10)
    return sio


def replication(url: str, secret: Path, ca: Path) -> dict:
    answer = requests.get(url + "/api/replication", headers={"Authorization": "Bearer " + secret.read_text().strip()},
                          verify=str(ca), timeout=5)
    return answer.json()


def test_clients_replication_and_forwarded_commands_go_over_tls(chatlog, tmp_path, pki, secret):
    tls = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")]
    leader = Server(chatlog, tmp_path / "leader", *tls, "--replication-secret-file", str(secret)).start()
    standby = None
    try:
        assert leader.url.startswith("https://127.0.0.1:")
        health = requests.get(leader.url + "/healthz", verify=str(pki / "ca.pem"), timeout=5)
        assert health.status_code == 200
        # The certificate is checked: another CA's clients refuse it, and plain HTTP gets nothing.
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(leader.url + "/healthz", verify=str(pki / "other.pem"), timeout=5)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(leader.url.replace("https://", "http://") + "/healthz", timeout=5)

        standby = Server(chatlog, tmp_path / "standby", *tls, "--replication-secret-file", str(secret),
                         "--standby-of", leader.url, "--tls-ca-file", str(pki / "ca.pem")).start()
        for transports in (["websocket"], ["polling"]):
            alice = client(standby.url, pki / "ca.pem", "alice", transports)
            assert alice.call("join-group", {"group": "g"}, timeout=10)["ok"]
            answer = alice.call("send-group-message", {"group": "g", "message": f"over {transports[0]}"}, timeout=10)
            assert answer["ok"], answer
            alice.disconnect()
        wait_until(lambda: replication(standby.url, secret, pki / "ca.pem")["committed_offset"]
                   == replication(leader.url, secret, pki / "ca.pem")["committed_offset"], what="the standby catching up")
        status = run(chatlog, "replication", "status", "--server", standby.url, "--replication-secret-file", str(secret),
                     "--tls-ca-file", str(pki / "ca.pem"), "--format", "json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["leader"]["state"] == "following"
    finally:
        for server in (standby, leader):
            if server and server.process.poll() is None:
                server.stop()


def test_a_standby_that_does_not_trust_the_leaders_certificate_says_so(chatlog, tmp_path, pki, secret):
    tls = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")]
    leader = Server(chatlog, tmp_path / "leader", *tls, "--replication-secret-file", str(secret)).start()
    standby = None
    try:
        standby = Server(chatlog, tmp_path / "standby", "--replication-secret-file", str(secret), "--standby-of", leader.url,
                         "--tls-ca-file", str(pki / "other.pem")).start()
        wait_until(lambda: replication(standby.url, secret, pki / "ca.pem").get("leader", {}).get("state") in ("retrying", "failing"),
                   what="the standby reporting the failure")
        error = replication(standby.url, secret, pki / "ca.pem")["leader"]["last_error"]
        assert "certificate" in error.lower() or "ssl" in error.lower() or "tls" in error.lower(), error
    finally:
        for server in (standby, leader):
            if server and server.process.poll() is None:
                server.stop()


def test_bad_tls_options_are_refused_with_one_clear_line(chatlog, tmp_path, pki):
    journal = str(tmp_path / "j")
    half = run(chatlog, "serve", "--journal", journal, "--dev", "--port", "0", "--tls-cert", str(pki / "server.pem"))
    assert half.returncode == 64 and "--tls-cert and --tls-key go together" in half.stderr, half.stderr
    missing = run(chatlog, "serve", "--journal", journal, "--dev", "--port", "0", "--tls-cert", str(tmp_path / "nope.pem"),
                  "--tls-key", str(pki / "server.key"))
    assert missing.returncode == 2 and "--tls-cert" in missing.stderr and "nope.pem" in missing.stderr, missing.stderr


def test_a_cluster_node_and_cluster_status_reach_etcd_over_tls(chatlog, tmp_path, pki, secret):
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server)")
    client_port, peer_port, port = free_port(), free_port(), free_port()
    etcd_url = f"https://127.0.0.1:{client_port}"
    etcd = subprocess.Popen(
        ["etcd", "--name", "t", "--data-dir", str(tmp_path / "etcd"), "--listen-client-urls", etcd_url,
         "--advertise-client-urls", etcd_url, "--cert-file", str(pki / "server.pem"), "--key-file", str(pki / "server.key"),
         "--listen-peer-urls", f"http://127.0.0.1:{peer_port}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-cluster", f"t=http://127.0.0.1:{peer_port}", "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = None
    try:
        wait_until(lambda: subprocess.run(["etcdctl", "--endpoints", etcd_url, "--cacert", str(pki / "ca.pem"), "endpoint", "health"],
                                          capture_output=True, timeout=20, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}).returncode == 0,
                   what="etcd serving TLS")
        status = ["cluster", "status", "--etcd", etcd_url, "--cluster", "chat", "--tls-ca-file", str(pki / "ca.pem")]
        node = Server(chatlog, tmp_path / "a", "--etcd", etcd_url, "--cluster", "chat", "--node", "a",
                      "--advertise-url", f"http://127.0.0.1:{port}", "--replication-secret-file", str(secret),
                      "--tls-ca-file", str(pki / "ca.pem")).start(port=port)
        wait_until(lambda: "leader a at" in run(chatlog, *status).stdout, what="a leading, seen through a TLS etcd")
        # Without the authority, etcd's certificate is not trusted.
        untrusted = run(chatlog, "cluster", "status", "--etcd", etcd_url, "--cluster", "chat", "--tls-ca-file", str(pki / "other.pem"))
        assert untrusted.returncode == 2, untrusted.stderr
    finally:
        if node and node.process.poll() is None:
            node.stop()
        etcd.kill()
        etcd.wait()
