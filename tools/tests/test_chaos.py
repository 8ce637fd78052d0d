"""The replication chaos script in its short form (tools/chaos_replication.py; docs/operations.md "Replication")."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_failovers_lose_no_acknowledged_message_and_readers_see_no_gap(chatlog):
    kills = os.environ.get("CHATLOG_CHAOS_KILLS", "2")
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "chaos_replication.py"), "--kills", kills],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "CHATLOG": chatlog})
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every acknowledged message exactly once" in result.stdout
