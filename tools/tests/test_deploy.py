"""The deployment examples in docs/deploy/, run rather than trusted: the systemd unit passes
systemd's own check, the example settings file starts a server, and the nginx configuration,
as written but for its addresses, port and certificate, carries a WebSocket client and a
long-polling client over TLS to a leader and its standby."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
import socketio

from chatserver import Server
from conftest import ROOT, free_port, make_pki, wait_until

DEPLOY = ROOT / "docs" / "deploy"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (Debian's systemd)")
def test_the_systemd_unit_passes_systemds_check(chatlog, tmp_path: Path) -> None:
    unit = (DEPLOY / "chatlog.service").read_text()
    assert "ExecStart=/usr/local/bin/chatlog serve --journal /var/lib/chatlog/journal" in unit
    # The hardening the guide promises is in the unit.
    for setting in ("User=chatlog", "NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=chatlog",
                    "CapabilityBoundingSet=", "SystemCallFilter=@system-service", "RestartPreventExitStatus=2 64"):
        assert re.search(rf"^{re.escape(setting)}$", unit, re.M), setting
    copy = tmp_path / "chatlog.service"
    copy.write_text(unit.replace("/usr/local/bin/chatlog", chatlog))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys too: what it says is the verdict.
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_the_example_settings_file_starts_a_server(chatlog, tmp_path: Path) -> None:
    server = Server(chatlog, tmp_path / "j", "--config", str(DEPLOY / "chatlog.json"), "--host", "127.0.0.1", dev=False)
    server.start(port=free_port())
    try:
        assert requests.get(server.url + "/healthz", timeout=5).json()["status"] == "ok"
        # The file's CORS origin is in force.
        answer = requests.get(server.url + "/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://chat.example.com"},
                              timeout=5)
        assert answer.headers.get("Access-Control-Allow-Origin") == "https://chat.example.com"
    finally:
        server.stop()


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None, reason="needs nginx and openssl")
def test_clients_reach_a_leader_and_its_standby_through_the_nginx_example(chatlog, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", subject="localhost")
    secret = tmp_path / "replication.secret"
    secret.write_text(os.urandom(24).hex() + "\n")

    leader = Server(chatlog, tmp_path / "leader", "--replication-secret-file", str(secret), "--trust-forwarded-for").start()
    standby = Server(chatlog, tmp_path / "standby", "--standby-of", leader.url, "--replication-secret-file", str(secret),
                     "--trust-forwarded-for").start()
    nginx = None
    clients: list[socketio.Client] = []
    try:
        # The example as written, but for the nodes' addresses, the port and the certificate.
        site = (DEPLOY / "nginx.conf").read_text()
        site, nodes = re.subn(r"server 10\.0\.0\.\d:3000", "server 127.0.0.1:PORT", site)
        assert nodes == 3
        site = site.replace("server 127.0.0.1:PORT", f"server 127.0.0.1:{leader.port}", 1)
        site = site.replace("server 127.0.0.1:PORT", f"server 127.0.0.1:{standby.port}", 1)
        site = re.sub(r"^\s*server 127\.0\.0\.1:PORT.*\n", "", site, flags=re.M)
        port = free_port()
        site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
        site = site.replace("/etc/ssl/certs/chat.example.com.pem", str(pki / "server.pem"))
        site = site.replace("/etc/ssl/private/chat.example.com.key", str(pki / "server.key"))
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        (prefix / "site.conf").write_text(site)
        # What Debian's /etc/nginx/nginx.conf gives a site: an http block, here in the test's directory.
        (prefix / "nginx.conf").write_text(f"""
user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/site.conf;
}}
""")
        check = subprocess.run(["nginx", "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf")], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        nginx = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
                                 stderr=subprocess.PIPE, text=True)
        url = f"https://localhost:{port}"
        wait_until(lambda: requests.get(url + "/healthz", verify=str(pki / "ca.pem"), timeout=2).status_code == 200,
                   what="nginx answering over TLS")

        def connect(username: str, transports: list[str]) -> socketio.Client:
            session = requests.Session()
            session.trust_env = False
            session.verify = str(pki / "ca.pem")
            sio = socketio.Client(reconnection=False, http_session=session, ssl_verify=str(pki / "ca.pem"))
            received: list = []
            sio.on("send-group-message", lambda message: received.append(message))
            sio.received = received  # type: ignore[attr-defined]
            sio.connect(url, auth={"username": username}, transports=transports, wait_timeout=10)
            clients.append(sio)
            return sio

        websocket = connect("alice", ["websocket"])
        polling = connect("bob", ["polling"])
        assert websocket.transport() == "websocket" and polling.transport() == "polling"
        for sio, name in ((websocket, "alice"), (polling, "bob")):
            assert sio.call("join-group", {"group": "g", "username": name}, timeout=10)["ok"]
        sent = []
        for sio, name in ((websocket, "alice"), (polling, "bob")):
            ack = sio.call("send-group-message", {"group": "g", "message": f"from {name}", "created": 1}, timeout=10)
            assert ack["ok"], ack
            sent.append(ack["id"])
        for sio in (websocket, polling):
            wait_until(lambda: [m["id"] for m in sio.received] == sent, timeout=15, what="both messages through nginx")
        # A long-poll held across a quiet spell still delivers (no proxy buffering or early cut).
        time.sleep(3)
        late = websocket.call("send-group-message", {"group": "g", "message": "after a pause", "created": 2}, timeout=10)
        wait_until(lambda: late["id"] in [m["id"] for m in polling.received], timeout=15, what="the message after a pause")
        # Both nodes were behind the proxy, and the node that served wrote through the leader.
        access = (prefix / "access.log").read_text()
        assert "socket.io" in access
        assert requests.get(leader.url + "/healthz", timeout=5).json()["offset"] == late["id"] + 1
    finally:
        for sio in clients:
            sio.disconnect()
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                nginx.kill()
        standby.stop()
        leader.stop()
