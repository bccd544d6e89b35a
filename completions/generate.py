"""Write the shell completion scripts in this directory from the app.

Run ``python completions/generate.py`` after changing commands; a test fails while the
committed scripts differ from what this writes. The scripts call back into snapctl
(``_SNAPCTL_COMPLETE``), so commands, options and values come from the installed version.
"""

from __future__ import annotations

from pathlib import Path

from typer._completion_shared import get_completion_script

HERE = Path(__file__).resolve().parent
FILES = {"bash": "snapctl.bash", "zsh": "_snapctl", "fish": "snapctl.fish"}


def scripts() -> dict[str, str]:
    return {
        filename: get_completion_script(
            prog_name="snapctl", complete_var="_SNAPCTL_COMPLETE", shell=shell
        )
        + "\n"
        for shell, filename in FILES.items()
    }


if __name__ == "__main__":
    for filename, text in scripts().items():
        (HERE / filename).write_text(text)
        print(f"wrote {HERE / filename}")
