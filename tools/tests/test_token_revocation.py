"""`chatlog token revoke` (docs/protocol.md, "Revoking tokens"): a revocation journaled on the
leader is known to every node (a standby copies it), survives restarts, refuses the user's
older tokens at CONNECT and on the HTTP API, closes the connections made with them, and leaves
tokens issued afterwards working."""

import os
import time

import pytest
import requests
import socketio

from chatserver import Client, Server
from conftest import run
from test_replication import secret, servers, status, wait_until  # noqa: F401


def issue(chatlog, user: str, secret_file) -> str:
    result = run(chatlog, "token", "issue", user, "--secret-file", str(secret_file))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def refused(url: str, token: str) -> str:
    """The CONNECT_ERROR message a token gets, or "" when it is accepted."""
    client = socketio.Client(reconnection=False)
    errors = []
    client.on("connect_error", lambda data: errors.append(data))
    try:
        client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    except socketio.exceptions.ConnectionError:
        assert len(errors) == 1 and errors[0]["data"] == {"code": "unauthorized"}, errors
        return errors[0]["message"]
    client.disconnect()
    return ""


def api_status(url: str, token: str) -> int:
    return requests.get(url + "/api/rooms", headers={"Authorization": "Bearer " + token}, timeout=10).status_code


@pytest.fixture()
def auth_secret(tmp_path):
    path = tmp_path / "auth.secret"
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o600)
    return path


def test_a_revocation_reaches_every_node_survives_restarts_and_spares_newer_tokens(chatlog, tmp_path, secret, auth_secret, servers):
    common = ("--auth-secret-file", str(auth_secret), "--replication-secret-file", str(secret))
    lead = servers(Server(chatlog, tmp_path / "leader", *common, dev=False))
    follower = servers(Server(chatlog, tmp_path / "standby", *common, "--standby-of", lead.url, "--standby-name", "s1", dev=False))
    old, bob = issue(chatlog, "alice", auth_secret), issue(chatlog, "bob", auth_secret)
    on_leader = Client(lead.url, token=old, transports=["websocket"])
    on_standby = Client(follower.url, token=old, transports=["websocket"])
    assert on_leader.call("join-group", {"group": "g"})["ok"]
    time.sleep(1.1)  # the revocation covers its whole second: what is issued in it too

    result = run(chatlog, "token", "revoke", "alice", "--secret-file", str(auth_secret), "--server", lead.url)
    assert result.returncode == 0, result.stderr
    assert "revoked alice's tokens issued before" in result.stdout and "every node refuses them" in result.stdout
    wait_until(lambda: status(follower.url)["committed_offset"] == status(lead.url)["committed_offset"], what="the standby copying it")

    # Every node: the old token is refused at CONNECT and on the HTTP API; its connections closed.
    for node in (lead, follower):
        assert "the token was revoked" in refused(node.url, old)
        assert api_status(node.url, old) == 401
        assert refused(node.url, bob) == "" and api_status(node.url, bob) == 200
    wait_until(lambda: not on_leader.sio.connected and not on_standby.sio.connected, what="the revoked connections closed")

    # A token issued afterwards works (a second later: the revocation covers its second).
    time.sleep(1.1)
    new = issue(chatlog, "alice", auth_secret)
    for node in (lead, follower):
        assert refused(node.url, new) == "" and api_status(node.url, new) == 200

    # Journaled: after a restart, from the snapshot; and after one that replays the journal.
    assert lead.stop() == 0
    lead = servers(Server(chatlog, tmp_path / "leader", *common, dev=False), port=lead.port)
    assert "revoked" in refused(lead.url, old) and refused(lead.url, new) == ""
    assert lead.stop() == 0
    (tmp_path / "leader" / "projections" / "room-state.snapshot").unlink()
    lead = servers(Server(chatlog, tmp_path / "leader", *common, dev=False), port=lead.port)
    assert "revoked" in refused(lead.url, old) and refused(lead.url, new) == ""

    # Exported as its own line type.
    exported = run(chatlog, "journal", "export", "--journal", str(tmp_path / "standby"))
    assert '"type":"tokens_revoked"' in exported.stdout
    on_leader.close()
    on_standby.close()


def test_revoking_without_a_server_and_the_refusals(chatlog, tmp_path, secret, auth_secret, servers):
    journal = tmp_path / "journal"
    server = servers(Server(chatlog, journal, "--auth-secret-file", str(auth_secret), "--replication-secret-file", str(secret), dev=False))
    old = issue(chatlog, "alice", auth_secret)
    standby_server = servers(Server(chatlog, tmp_path / "standby", "--auth-secret-file", str(auth_secret),
                                    "--replication-secret-file", str(secret), "--standby-of", server.url, dev=False))
    other = tmp_path / "other.secret"
    other.write_text(os.urandom(32).hex() + "\n")
    cases = [
        # A standby does not decide writes.
        (["--secret-file", str(auth_secret), "--server", standby_server.url], 1, "not_leader"),
        # Another server's secret.
        (["--secret-file", str(other), "--server", server.url], 1, "its secret signs the operator's token"),
        # The journal is in use by the server: revoke through it.
        (["--journal", str(journal)], 2, "is in use by process"),
        (["--secret-file", str(auth_secret), "--server", "http://127.0.0.1:1"], 2, "connection refused"),
    ]
    for args, code, words in cases:
        result = run(chatlog, "token", "revoke", "alice", *args)
        assert result.returncode == code and words in result.stderr, (args, result.returncode, result.stderr)
    assert refused(server.url, old) == ""
    # An operator's token cannot chat.
    dev_journal = tmp_path / "dev"
    dev = servers(Server(chatlog, dev_journal))
    response = requests.post(dev.url + "/api/admin/revoke-tokens", json={"username": "alice"}, timeout=10)
    assert response.status_code == 403 and response.json()["error"]["code"] == "no_tokens"

    # A stopped server's journal takes the revocation directly.
    assert standby_server.stop() == 0 and server.stop() == 0
    time.sleep(1.1)
    result = run(chatlog, "token", "revoke", "alice", "--journal", str(journal))
    assert result.returncode == 0 and "revoked alice's tokens" in result.stdout, result.stderr
    server = servers(Server(chatlog, journal, "--auth-secret-file", str(auth_secret), dev=False))
    assert "revoked" in refused(server.url, old)
