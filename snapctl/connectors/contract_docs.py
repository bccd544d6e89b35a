"""README's connector contract, written from api.py's Protocols and their docstrings.

``python -m snapctl.connectors.contract_docs`` prints it; with ``--write README.md`` it
replaces the part of that file between the contract markers. A test fails while README
differs from what this writes.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from snapctl.connectors import api

START = "<!-- contract:start -->"
END = "<!-- contract:end -->"
COMMAND = "python -m snapctl.connectors.contract_docs --write README.md"
WIDTH = 95


def _markdown(doc: str) -> str:
    """A docstring as Markdown: reStructuredText's ````code```` becomes ```code```."""
    return doc.replace("``", "`")


def _item(text: str) -> str:
    """A list item, wrapped as README's prose is."""
    return textwrap.fill(
        " ".join(_markdown(text).split()),
        WIDTH,
        initial_indent="- ",
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _signature(function: Callable[..., Any]) -> str:
    """``name(param: type, ...) -> type`` as the source spells the annotations."""
    parameters = list(inspect.signature(function).parameters.values())[1:]  # without self
    hints = function.__annotations__
    params = ", ".join(f"{p.name}: {hints[p.name]}" for p in parameters)
    return f"{function.__name__}({params}) -> {hints['return']}"


def _attributes(cls: type) -> Iterator[str]:
    """Its annotated attributes, with their defaults and the docstrings below them, read from
    the source (Python keeps neither docstring)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    assert isinstance(body, ast.ClassDef)
    for statement, following in zip(body.body, [*body.body[1:], None], strict=True):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        line = f"{statement.target.id}: {ast.unparse(statement.annotation)}"
        value = statement.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            line += f' = "{value.value}"'  # as the README's examples quote strings
        elif value is not None and not isinstance(value, ast.Call):  # field(...) says nothing
            line += f" = {ast.unparse(value)}"
        doc = ""
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            doc = ": " + following.value.value
        yield _item(f"`{line}`{doc}")


def _methods(cls: type) -> Iterator[str]:
    for name, member in vars(cls).items():
        if inspect.isfunction(member) and not name.startswith("_"):
            yield _item(f"`{_signature(member)}`: {inspect.getdoc(member) or ''}")


def markdown() -> str:
    """The contract, as README shows it between the markers (markers excluded)."""
    parts = [
        f"<!-- written by `{COMMAND}` from snapctl/connectors/api.py: edit that, not this -->",
        textwrap.fill(
            "The whole contract, as typed Protocols in `snapctl/connectors/api.py` (a "
            "connector may check itself against them with mypy):",
            WIDTH,
        ),
    ]
    for cls in api.CONTRACT:
        parts.append(f"#### `{cls.__name__}`")
        parts.append(_markdown(inspect.getdoc(cls) or ""))
        members = [*_attributes(cls), *_methods(cls)]
        if members:
            parts.append("\n".join(members))
    return "\n\n".join(parts) + "\n"


def replaced(text: str) -> str:
    """``text`` (README) with the part between the markers written anew."""
    before, start, rest = text.partition(START)
    _, end, after = rest.partition(END)
    if not (start and end):
        raise ValueError(f"no {START} ... {END} markers")
    return f"{before}{START}\n{markdown()}{END}{after}"


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--write"] and len(argv) == 2:
        path = Path(argv[1])
        path.write_text(replaced(path.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"wrote the connector contract into {path}")
        return 0
    if argv:
        print(f"usage: {COMMAND.replace(' README.md', ' FILE')} (or no argument: print it)")
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
