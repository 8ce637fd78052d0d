"""The README's tour, run as a newcomer would: every shell block of "A five-minute tour", in
order, against real servers, from a directory laid out like a fresh clone.

What the test stands in for, and nothing else: `make run` is the Makefile's own `run` command
on the binary under test (checked against the Makefile), `.build/release/chatlog` is that
binary, the ports 3000 and 3001 are free ones, Ctrl-C before a server is started again on a
port is SIGINT, and a person's few seconds between starting a standby and reading from it is a
wait until it has caught up. `.venv` is the suite's own, so `pip install` finds its packages
there (the command still runs)."""

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import requests

from conftest import ROOT, free_port, wait_until


def tour_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## A five-minute tour")
    end = readme.index("\n## ", start + 1)
    return re.findall(r"```sh\n(.*?)```", readme[start:end], re.S)


def test_the_makefiles_run_is_the_command_the_test_stands_in_for() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert ("exec .build/release/chatlog serve --journal $(JOURNAL) --host 127.0.0.1 --port $(PORT) --dev" in makefile)
    assert re.search(r"^JOURNAL \?= data/journal$", makefile, re.M) and re.search(r"^PORT \?= 3000$", makefile, re.M)


class Shell:
    """One bash, as the user's second terminal: variables and PATH carry from block to block."""

    def __init__(self, cwd: Path, env: dict):
        self.process = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def run(self, block: str, timeout: float = 120) -> str:
        marker = f"__block_done_{time.monotonic_ns()}__"
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(f"set -eo pipefail\n{block}\necho {marker}\n")
        self.process.stdin.flush()
        output = []
        # A block that hangs is killed with its shell, which ends the read below.
        watchdog = threading.Timer(timeout, self.process.kill)
        watchdog.start()
        try:
            while True:
                line = self.process.stdout.readline()
                if not line:
                    raise AssertionError(f"the block failed or took over {timeout} s (the shell exited {self.process.wait()}):\n"
                                         f"{block}\n{''.join(output)}")
                if line.rstrip("\n").endswith(marker):  # output without a final newline ends on its line
                    output.append(line.rstrip("\n")[: -len(marker)])
                    return "".join(output)
                output.append(line)
        finally:
            watchdog.cancel()

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_every_block_of_the_tour_runs_in_order(chatlog, tmp_path: Path) -> None:
    ports = {"3000": str(free_port()), "3001": str(free_port())}
    clone = tmp_path / "chatlog"
    (clone / ".build" / "release").mkdir(parents=True)
    (clone / ".build" / "release" / "chatlog").symlink_to(chatlog)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    env = dict(os.environ)  # chatlog is on PATH only where a block puts it there
    servers: dict[str, subprocess.Popen] = {}
    shell = Shell(clone, env)

    def ported(text: str) -> str:
        for readme_port, port in ports.items():
            text = text.replace(f"127.0.0.1:{readme_port}", f"127.0.0.1:{port}").replace(f"--port {readme_port}", f"--port {port}")
        return text

    def serve(block: str) -> None:
        """A block that ends in a server, run in a terminal of its own (a bash of its own)."""
        port = re.search(r"--port (\d+)", block).group(1)
        if port in servers:  # the reader stops the earlier server (Ctrl-C) before this one
            servers[port].send_signal(signal.SIGINT)
            assert servers[port].wait(timeout=30) == 0
        log = tmp_path / f"serve-{port}-{len(servers)}.log"
        process = subprocess.Popen(["bash", "-eo", "pipefail", "-c", re.sub(r"^(\S*chatlog serve)", r"exec \1", block, count=1, flags=re.M)],
                                   cwd=clone, env=env, text=True, stdout=subprocess.PIPE, stderr=open(log, "w"))
        assert process.stdout
        printed = []
        watchdog = threading.Timer(60, process.kill)
        watchdog.start()
        while not printed or not printed[-1].startswith("listening on "):
            line = process.stdout.readline()
            assert line, f"the server did not start:\n{block}\n{''.join(printed)}{log.read_text()}"
            printed.append(line)
        watchdog.cancel()
        servers[port] = process

    def offset(port: str) -> int:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["offset"]

    try:
        blocks = tour_blocks()
        assert len(blocks) >= 8, "the tour lost its blocks"
        outputs = []
        for block in blocks:
            block = ported(block)
            if block.strip() == "make run":
                serve(f".build/release/chatlog serve --journal data/journal --host 127.0.0.1 --port {ports['3000']} --dev")
                continue
            if "chatlog serve" in block:
                serve(block)
                if "--standby-of" in block:
                    wait_until(lambda: offset(ports["3001"]) == offset(ports["3000"]), what="the standby caught up")
                continue
            outputs.append(shell.run(block))
        said = "".join(outputs)
        # What the blocks print: the acks, the API's answers, the history, the standby's copy.
        assert said.count("'ok': True") == 2, said
        assert '"client_id":"bob-1"' in said.replace(" ", "") and "deploy at 3" in said, said
        assert re.search(r"alice: \"hello\"", said), said
        assert "standby standby: connected" in said, said
    finally:
        shell.close()
        for process in servers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
