"""Shell completion: the committed scripts match the app, and a real bash completes with them."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE, ROOT, clean_env


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


def bash_complete(line: str) -> list[str]:
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
    bindir = Path(sys.executable).parent
    env = clean_env(PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        ["bash", "--norc", "-c", script],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [c for c in result.stdout.splitlines() if c]


@pytest.mark.skipif(not shutil.which("bash"), reason="bash is not installed")
def test_bash_completes_commands_and_options() -> None:
    if not shutil.which("snapctl", path=str(Path(sys.executable).parent)):
        pytest.skip("snapctl is not installed in this environment's bin directory")
    assert bash_complete("snapctl re") == ["restore"]
    assert set(bash_complete("snapctl list")) == {"list", "list-connectors"}
    options = bash_complete("snapctl dump --")
    assert {"--alias", "--all", "--label", "--compress", "--connector", "--json"} <= set(options)
    assert "--yes" in bash_complete("snapctl restore --")
