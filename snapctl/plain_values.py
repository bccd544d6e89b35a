"""Command-line values checked without pydantic.

typer 0.28 and later check every parameter's value through a pydantic TypeAdapter, built when
the command runs: importing pydantic and building one adapter per parameter costs 60-100 ms
of every snapctl command, more than all the rest of a small dump. snapctl's values are
strings, lists of strings, flags, bounded integers and directory paths; :func:`use_plain_values`
gives those parameters the same checks without pydantic. Any other parameter, and typers that
check values with click's types (before 0.28, which have no such cost), are left as they are.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

Check = Callable[[Any, Any], Any]  # (value, parameter_info) -> the value for the command


def _string(value: Any, info: Any) -> str:
    if not isinstance(value, str):
        raise typer.BadParameter(f"{value!r} is not a string.")
    return value


def _strings(values: Any, info: Any) -> list[str]:
    return [_string(value, info) for value in values]


_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off", ""}


def _boolean(value: Any, info: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise typer.BadParameter(f"{value!r} is not a valid boolean.")


def _integer(value: Any, info: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise typer.BadParameter(f"{value!r} is not a valid integer.") from None
    if info.min is not None and number < info.min:
        raise typer.BadParameter(f"{number} is not in the range x>={info.min}.")
    if info.max is not None and number > info.max:
        raise typer.BadParameter(f"{number} is not in the range x<={info.max}.")
    return number


def _path(value: Any, info: Any) -> Path:
    path = Path(value)
    label = (
        "Path" if info.file_okay and info.dir_okay else "File" if info.file_okay else "Directory"
    )
    try:
        mode = path.stat().st_mode
    except OSError:
        return path  # a path that does not exist yet is fine: exists=True is not handled here
    if not info.file_okay and stat.S_ISREG(mode):
        raise typer.BadParameter(f"{label} '{value}' is a file.")
    if not info.dir_okay and stat.S_ISDIR(mode):
        raise typer.BadParameter(f"{label} '{value}' is a directory.")
    if info.readable and not os.access(path, os.R_OK):
        raise typer.BadParameter(f"{label} '{value}' is not readable.")
    return path


def check_for(annotation: Any, info: Any) -> Check | None:
    """The plain check for a parameter, or None to leave it to typer."""
    if info.parser is not None or getattr(info, "clamp", False):
        return None
    if annotation is str:
        return _string
    if annotation == list[str]:
        return _strings
    if annotation is int:
        return _integer
    if annotation is bool:
        return _boolean  # typer skips flags that are already True or False; not None
    path_flags = ("exists", "writable", "resolve_path", "allow_dash", "path_type")
    if annotation is Path and not any(getattr(info, flag, False) for flag in path_flags):
        return _path
    return None


@dataclass(frozen=True)
class PlainValue:
    """Stands in for typer's runtime parameter: ``coerce`` is all that typer calls."""

    check: Check
    info: Any

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        several = param.multiple or param.nargs == -1
        if value is None:
            return () if several else None
        if several and isinstance(value, str):
            raise typer.BadParameter("Value must be an iterable.", ctx=ctx, param=param)
        try:
            return self.check(value, self.info)
        except typer.BadParameter as exc:
            exc.ctx, exc.param = ctx, param
            raise


def use_plain_values(params: list[Any]) -> None:
    """Give ``params`` plain checks where typer would build pydantic ones."""
    for param in params:
        # Only typer's lazily built runtime parameters, not yet built: None, not absent.
        if getattr(param, "_runtime_param", False) is not None:
            continue
        descriptor = getattr(param, "type_descriptor", None)
        info = getattr(descriptor, "parameter_info", None)
        if descriptor is None or info is None:
            continue
        check = check_for(descriptor.annotation, info)
        if check is not None:
            param._runtime_param = PlainValue(check, info)
