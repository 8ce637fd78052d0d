"""`chatlog cluster status` against a real etcd (Debian's etcd-server), started and removed here."""

import json
import shutil
import time

import pytest

from conftest import etcdctl, free_port, run

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (apt-get install etcd-server)")


def put(url: str, key: str, value: str, lease: str | None = None) -> None:
    args = ["put", key] + ([f"--lease={lease}"] if lease else [])
    assert etcdctl(url, *args, stdin=value).returncode == 0


def test_status_shows_leader_lease_in_sync_set_and_nodes(chatlog: str, etcd: str) -> None:
    granted = etcdctl(etcd, "lease", "grant", "60")
    lease = granted.stdout.split()[1]  # "lease 694d... granted with TTL(60s)"
    put(etcd, "/chatlog/chat/id", "cluster-1")
    put(etcd, "/chatlog/chat/epoch", "3")
    put(etcd, "/chatlog/chat/leader", json.dumps({"node": "a", "url": "http://a:3000", "epoch": 3}), lease)
    put(etcd, "/chatlog/chat/isr", json.dumps({"epoch": 3, "members": ["a", "b"]}))
    put(etcd, "/chatlog/chat/nodes/a", json.dumps({"url": "http://a:3000"}), lease)
    put(etcd, "/chatlog/chat/nodes/c", json.dumps({"url": "http://c:3000"}))

    text = run(chatlog, "cluster", "status", "--etcd", etcd, "--cluster", "chat")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "cluster chat (id cluster-1), epoch 3"
    assert lines[1].startswith("leader a at http://a:3000, epoch 3, lease ") and lines[1].endswith(" s left")
    assert "in sync (may lead next): a, b" in lines
    assert "node a at http://a:3000: leader, in sync" in lines
    assert "node c at http://c:3000: standby" in lines

    as_json = run(chatlog, "cluster", "status", "--etcd", etcd, "--cluster", "chat", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    status = json.loads(as_json.stdout)
    assert status["leader"] == {"node": "a", "url": "http://a:3000", "epoch": 3}
    assert 0 < status["leader_lease_seconds"] <= 60
    assert [(n["name"], n["role"], n["in_sync"]) for n in status["nodes"]] == [("a", "leader", True), ("c", "standby", False)]


def test_errors_are_clear_and_exit_1_or_2_when_etcd_is_unreachable(chatlog: str, etcd: str) -> None:
    missing = run(chatlog, "cluster", "status", "--etcd", etcd, "--cluster", "nowhere")
    assert missing.returncode == 1 and "no cluster called nowhere" in missing.stderr

    put(etcd, "/chatlog/broken/id", "x")
    put(etcd, "/chatlog/broken/leader", "not json")
    broken = run(chatlog, "cluster", "status", "--etcd", etcd, "--cluster", "broken")
    assert broken.returncode == 1 and "damaged" in broken.stderr and "/chatlog/broken/leader" in broken.stderr

    bad_name = run(chatlog, "cluster", "status", "--etcd", etcd, "--cluster", "a/b")
    assert bad_name.returncode == 1 and "cluster name" in bad_name.stderr

    bad_url = run(chatlog, "cluster", "status", "--etcd", "etcd:2379", "--cluster", "chat")
    assert bad_url.returncode == 1 and "http://" in bad_url.stderr

    start = time.monotonic()
    down = run(chatlog, "cluster", "status", "--etcd", f"http://127.0.0.1:{free_port()}", "--cluster", "chat")
    assert down.returncode == 2 and "etcd unavailable" in down.stderr
    assert time.monotonic() - start < 15
