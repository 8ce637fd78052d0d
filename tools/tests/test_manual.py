"""The man page (docs/man/chatlog.1, committed; tools/generate-manual.sh regenerates it) and the
shell completions, both made by swift-argument-parser from chatlog's own help: the page names
every command and option the binary has, and each shell's completion script loads."""

import json
import re
import shutil
import subprocess
from collections import Counter

import pytest

from conftest import ROOT, run

PAGE = ROOT / "docs" / "man" / "chatlog.1"


def commands(node: dict, path: tuple[str, ...] = ()):
    """Every command of `--experimental-dump-help`, with the path to it."""
    name = node["commandName"]
    yield path + (name,), node
    for child in node.get("subcommands", []):
        yield from commands(child, path + (name,))


def test_the_man_page_names_every_command_and_option(chatlog) -> None:
    dumped = run(chatlog, "--experimental-dump-help")
    assert dumped.returncode == 0, dumped.stderr
    page = PAGE.read_text()
    missing = []
    needed: Counter = Counter()  # each option as often as the commands that have it
    for path, command in commands(json.loads(dumped.stdout)["command"]):
        if command.get("shouldDisplay", True) is False or "help" == path[-1]:
            continue
        if len(path) > 1 and f".It Em {path[-1]}\n" not in page:  # a subcommand's entry
            missing.append(" ".join(path))
        for argument in command.get("arguments", []):
            if argument.get("shouldDisplay", True) is False:
                continue
            for name in argument.get("names", []):
                if name["kind"] == "long" and name["name"] not in ("help", "version"):
                    needed[name["name"]] += 1
    for option, count in needed.items():
        found = len(re.findall(rf"^\.It Fl -{re.escape(option)}( |$)", page, re.M))
        if found < count:
            missing.append(f"--{option} ({found} of {count} commands)")
    assert not missing, f"docs/man/chatlog.1 is behind the binary (run tools/generate-manual.sh): {missing}"


@pytest.mark.skipif(shutil.which("man") is None, reason="needs man")
def test_the_man_page_renders(chatlog) -> None:
    rendered = subprocess.run(["man", "-l", str(PAGE)], capture_output=True, text=True, timeout=60,
                              env={"MANPAGER": "cat", "PATH": "/usr/bin:/bin", "COLUMNS": "100"})
    assert rendered.returncode == 0 and "chatlog serve" in rendered.stdout, rendered.stderr
    assert "Exit codes" in rendered.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shells_completion_script_is_generated(chatlog, shell: str) -> None:
    script = run(chatlog, "--generate-completion-script", shell)
    assert script.returncode == 0 and "serve" in script.stdout and "--journal" in script.stdout


def test_the_bash_completion_loads_and_completes_a_subcommand(chatlog, tmp_path) -> None:
    script = tmp_path / "chatlog.bash"
    script.write_text(run(chatlog, "--generate-completion-script", "bash").stdout)
    # What bash does on `chatlog jo<TAB>`: the completion function fills COMPREPLY.
    probe = (f"source {script}; COMP_WORDS=(chatlog jo); COMP_CWORD=1; COMP_LINE='chatlog jo'; COMP_POINT=10; "
             f"_chatlog; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{ROOT / '.build' / 'debug'}:/usr/bin:/bin"})
    assert "journal" in result.stdout.split(), (result.stdout, result.stderr)
