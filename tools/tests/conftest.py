"""Shared fixtures for the CLI tests: the chatlog binary and a scratch journal directory."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def chatlog() -> str:
    path = os.environ.get("CHATLOG", str(ROOT / ".build" / "debug" / "chatlog"))
    if not Path(path).is_file():
        pytest.fail(f"chatlog binary not found at {path}; run `swift build` first or set CHATLOG")
    return path


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
