"""Command-line values are checked the same way whichever typer is installed (0.28 and later
would check them through pydantic, see snapctl/plain_values.py). In-process: no servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from helpers import EXIT_OK, EXIT_USAGE
from typer.testing import CliRunner

from snapctl.cli import app
from snapctl.plain_values import PlainValue, check_for

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["prune", "--keep", "-1", "--dir", "{tmp}"], ["--keep", "-1"]),
        (["prune", "--keep", "many", "--dir", "{tmp}"], ["--keep", "many"]),
        (["dump", "--level", "abc", "--dir", "{tmp}"], ["--level", "abc"]),
        (["list", "--dir", "{file}"], ["--dir", "is a file"]),
    ],
)
def test_bad_values_are_usage_errors(tmp_path: Path, args: list[str], words: list[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    argv = [arg.format(tmp=tmp_path, file=afile) for arg in args]
    result = runner.invoke(app, argv)
    assert result.exit_code == EXIT_USAGE, result.output
    for word in words:
        assert word in result.output


def test_good_values_reach_the_command(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--pythonpath", "a", "--pythonpath", "b", "list", "--dir",
                                 str(tmp_path), "--json"])  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    assert result.output.strip() == "[]"


class FakeParam:
    multiple = False
    nargs = 1


def _info(**fields: Any) -> Any:
    base = {"parser": None, "clamp": False, "min": None, "max": None, "file_okay": True,
            "dir_okay": True, "readable": True, "exists": False, "writable": False,
            "resolve_path": False, "allow_dash": False}  # fmt: skip
    return type("Info", (), {**base, **fields})()


@pytest.mark.parametrize(
    ("annotation", "info", "given", "expected"),
    [
        (str, _info(), "x", "x"),
        (int, _info(min=0), "7", 7),
        (bool, _info(), "yes", True),
        (bool, _info(), False, False),
        (bool, _info(), "", False),
        (Path, _info(file_okay=False), "/nonexistent/snapctl", Path("/nonexistent/snapctl")),
        (list[str], _info(), ("a", "b"), ["a", "b"]),
        (str, _info(), None, None),
    ],
)
def test_plain_checks_convert_like_typer(
    annotation: Any, info: Any, given: Any, expected: Any
) -> None:
    check = check_for(annotation, info)
    assert check is not None
    assert PlainValue(check, info).coerce(given, FakeParam(), None) == expected


@pytest.mark.parametrize(
    ("annotation", "info", "given"),
    [
        (int, _info(min=0), "-1"),
        (int, _info(max=3), "4"),
        (int, _info(), "x"),
        (bool, _info(), "maybe"),
    ],
)
def test_plain_checks_refuse_like_typer(annotation: Any, info: Any, given: Any) -> None:
    check = check_for(annotation, info)
    assert check is not None
    with pytest.raises(typer.BadParameter):
        PlainValue(check, info).coerce(given, FakeParam(), None)


@pytest.mark.parametrize(
    ("annotation", "info"),
    [
        (float, _info()),
        (Path, _info(exists=True)),
        (str, _info(parser=str)),
        (int, _info(clamp=True)),
    ],
)
def test_anything_else_is_left_to_typer(annotation: Any, info: Any) -> None:
    assert check_for(annotation, info) is None


def test_every_parameter_gets_a_plain_check_where_typer_would_use_pydantic() -> None:
    """With typer 0.28 and later, no parameter of any command is left to pydantic."""
    import typer.main

    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    commands = [group, *(group.get_command(ctx, name) for name in group.list_commands(ctx))]
    params = [param for command in commands for param in command.get_params(ctx)]
    if not any(hasattr(param, "_runtime_param") for param in params):
        pytest.skip("this typer checks values with click's types, without pydantic")
    left = [param.name for param in params if not isinstance(param._runtime_param, PlainValue)]
    assert left == []
