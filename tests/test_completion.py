"""Shell completion: the committed scripts match the app, and a real bash completes with them."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import EXAMPLE, EXIT_OK, IN_CI, ROOT, Project, clean_env


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("generate", ROOT / "completions" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_scripts_are_up_to_date() -> None:
    for filename, text in _generator().scripts().items():
        committed = (ROOT / "completions" / filename).read_text()
        assert committed == text, f"run: python completions/generate.py ({filename} is stale)"


def shell_env(**extra: str) -> dict[str, str]:
    bindir = Path(sys.executable).parent
    return clean_env(PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", **extra)


def need(program: str) -> None:
    """Shells are installed by .ci/run, so in CI a missing one is a failure."""
    if not shutil.which(program):
        if IN_CI:
            pytest.fail(f"{program} is not installed")
        pytest.skip(f"{program} is not installed")
    if not shutil.which("snapctl", path=str(Path(sys.executable).parent)):
        pytest.skip("snapctl is not installed in this environment's bin directory")


def bash_complete(line: str, **env: str) -> list[str]:
    """Complete ``line`` in a real bash with the committed script; return the candidates."""
    words = line.split(" ")
    script = f"""
source {ROOT / "completions" / "snapctl.bash"}
COMP_WORDS=({" ".join(f"'{w}'" for w in words)})
COMP_CWORD={len(words) - 1}
COMP_LINE='{line}'
COMP_POINT={len(line)}
_snapctl_completion snapctl
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = subprocess.run(
        ["bash", "--norc", "-c", script],
        cwd=EXAMPLE,
        env=shell_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [c for c in result.stdout.splitlines() if c]


@pytest.mark.e2e  # runs snapctl as a process
def test_bash_completes_commands_and_options() -> None:
    need("bash")
    assert bash_complete("snapctl re") == ["restore"]
    assert set(bash_complete("snapctl list")) == {"list", "list-connectors"}
    options = bash_complete("snapctl dump --")
    assert {"--alias", "--all", "--label", "--compress", "--connector", "--json"} <= set(options)
    assert "--yes" in bash_complete("snapctl restore --")


def test_bash_completes_aliases_snapshots_and_connectors(sqlite_project: Project) -> None:
    need("bash")
    first = sqlite_project.dump()
    second = sqlite_project.dump("--label", "nightly")
    env = {k: v for k, v in sqlite_project.env.items() if k.startswith(("EXAMPLE_", "SNAPCTL_"))}
    assert bash_complete("snapctl dump --alias ", **env) == ["default"]
    assert bash_complete("snapctl restore ", **env) == [second, first, "latest", "nightly"]
    assert bash_complete("snapctl restore la", **env) == ["latest"]
    assert bash_complete("snapctl show nigh", **env) == ["nightly"]
    assert bash_complete("snapctl dump --compress ", **env) == ["zstd", "gzip", "none"]
    assert bash_complete(f"snapctl restore {second[:-3]}", **env) == [second]
    assert bash_complete("snapctl dump --connector s", **env) == ["sqlite"]
    assert set(bash_complete("snapctl delete ", **env)) == {first, second, "latest", "nightly"}


def test_fish_completes(sqlite_project: Project) -> None:
    need("fish")
    name = sqlite_project.dump()
    script = (
        f"source {ROOT / 'completions' / 'snapctl.fish'}; "
        "complete -C 'snapctl re'; complete -C 'snapctl dump --alias '; "
        "complete -C 'snapctl restore '"
    )
    env = {k: v for k, v in sqlite_project.env.items() if k.startswith(("EXAMPLE_", "SNAPCTL_"))}
    result = subprocess.run(
        ["fish", "--no-config", "-c", script],
        cwd=EXAMPLE,
        env=shell_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    candidates = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert candidates == ["restore", "default", name, "latest"], result.stdout + result.stderr


@pytest.mark.e2e  # runs snapctl as a process
def test_zsh_completes_at_a_real_prompt(tmp_path: Path) -> None:
    """Drive an interactive zsh in tmux and press Tab, as a person would."""
    need("zsh")
    need("tmux")
    session = f"snapctl-{os.getpid()}"
    env = shell_env(HOME=str(tmp_path), TERM="xterm")
    socket = str(tmp_path / "tmux.sock")

    def tmux(*args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", socket, *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout

    def screen_after(keys: str, waiting_for: str) -> str:
        """Type ``keys``, press Tab, and return the screen once ``waiting_for`` shows."""
        tmux("send-keys", "-t", session, "C-u", keys, "Tab")
        deadline = time.monotonic() + 20
        shown = ""
        while waiting_for not in shown and time.monotonic() < deadline:
            time.sleep(0.3)
            shown = tmux("capture-pane", "-p", "-t", session)
        return shown

    tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "30", "-c", str(EXAMPLE), "zsh -f")
    try:
        tmux(
            "send-keys",
            "-t",
            session,
            f"autoload -U compinit && compinit -u && source {ROOT / 'completions' / '_snapctl'}",
            "Enter",
        )
        assert "snapctl restore" in screen_after("snapctl re", "snapctl restore")
        shown = screen_after("snapctl dump --connector ", "postgres")
        assert all(name in shown for name in ("dumpdata", "mysql", "postgres", "sqlite"))
    finally:
        subprocess.run(["tmux", "-S", socket, "kill-server"], env=env, capture_output=True)


@pytest.mark.e2e  # runs snapctl as a process
def test_completing_commands_and_options_does_not_import_django() -> None:
    for words, cword in (("snapctl re", "1"), ("snapctl dump --", "2")):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "snapctl"],
            cwd=EXAMPLE,
            env=clean_env(_SNAPCTL_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=cword),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == EXIT_OK, result.stderr
        assert result.stdout.split()  # it did complete something
        imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()]
        assert "snapctl.cli" in imported
        assert not [name for name in imported if name.split(".")[0] == "django"]


def test_completion_lists_a_shared_store_only_when_told_to(sqlite_project: Project) -> None:
    """As the commands do: a store others can write is left out, unless --shared-store."""
    need("bash")
    name = sqlite_project.dump()
    env = {k: v for k, v in sqlite_project.env.items() if k.startswith(("EXAMPLE_", "SNAPCTL_"))}
    sqlite_project.snapshots.chmod(0o777)
    try:
        assert bash_complete("snapctl restore ", **env) == []
        assert bash_complete("snapctl --shared-store restore ", **env) == [name, "latest"]
    finally:
        sqlite_project.snapshots.chmod(0o700)
