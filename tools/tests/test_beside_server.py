"""The read-only tools work beside a running `chatlog serve` on the same journal, without its
lock; the writing ones fail clearly, naming the server's pid."""

import json

from chatserver import Client, Server
from conftest import run


def test_read_only_commands_work_beside_a_running_server(chatlog, journal, tmp_path):
    server = Server(chatlog, journal).start()
    try:
        alice = Client(server.url, "alice")
        alice.call("create-group", {"group": "vault", "private": True, "name": "Vault"})
        alice.call("join-group", {"group": "general"})
        ids = [alice.call("send-group-message", {"group": "general", "message": f"m{n}", "created": n})["id"] for n in range(5)]
        alice.close()

        rooms = run(chatlog, "rooms", "--journal", str(journal), "--format", "json")
        assert rooms.returncode == 0, rooms.stderr
        listed = {r["room"]: r for r in map(json.loads, rooms.stdout.splitlines())}
        assert listed["vault"]["private"] is True and listed["general"]["members"] == ["alice"]

        history = run(chatlog, "history", "--journal", str(journal), "--room", "general", "--format", "json")
        assert history.returncode == 0, history.stderr
        page = [json.loads(line) for line in history.stdout.splitlines()]
        assert [m["offset"] for m in page] == ids
        # One convention for every command's JSON: snake_case, as export and the HTTP API.
        assert {"offset", "room", "author", "client_message_id", "text", "client_created_ms", "sent_ms"} <= page[0].keys(), page[0]

        for command in (["journal", "verify"], ["journal", "stats"], ["journal", "inspect", "--limit", "3"], ["journal", "export"]):
            result = run(chatlog, *command, "--journal", str(journal))
            assert result.returncode == 0, (command, result.stderr)
        exported = run(chatlog, "journal", "export", "--journal", str(journal)).stdout.splitlines()
        assert len(exported) == 2 + 5  # two rooms created, five messages

        into = tmp_path / "rebuilt"
        rebuilt = run(chatlog, "projections", "rebuild", "--journal", str(journal), "--into", str(into))
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert (into / "room-state.snapshot").exists() and (into / "history.sqlite").exists()
        assert "5 messages in history" in rebuilt.stdout

        pid = str(server.process.pid)
        for command in (["journal", "import"], ["projections", "rebuild"]):
            refused = run(chatlog, *command, "--journal", str(journal), stdin="")
            assert refused.returncode != 0 and pid in refused.stderr, (command, refused.stderr)
        # The server is unharmed.
        again = Client(server.url, "bob")
        assert again.call("join-group", {"group": "general"})["ok"]
        again.close()
    finally:
        assert server.stop() == 0
