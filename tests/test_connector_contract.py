"""The connector contract (snapctl/connectors/api.py): what capabilities_of reads, what it
refuses, and README's copy of the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import EXIT_USAGE, ROOT, Project

from snapctl.connectors import api, contract_docs
from snapctl.errors import ConfigurationError


class Minimal:
    def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
        return {}

    def restore(self, db_alias: str, src: Path) -> None:
        pass


class Everything(Minimal):
    name = "everything"
    engines = ("oracle",)
    binaries = ("expdp|exp", "impdp")
    extension = "dmp"
    portable = True
    needs_app_registry = False
    dump_to_pipe = True
    exclude = ("auth",)

    def restore_while_unpacking(self, db_alias: str, unpacking: Any) -> None:
        pass

    def check(self, db_alias: str, src: Path) -> None:
        pass

    def forget(self, db_alias: str, src: Path) -> None:
        pass

    def prepare_copy(self, db_alias: str, src: Path) -> api.PreparedCopy:
        return api.PreparedCopy("copy")

    def swap_in_copy(self, db_alias: str, copy: api.PreparedCopy) -> None:
        pass

    def drop_copy(self, db_alias: str, copy: api.PreparedCopy) -> None:
        pass


def test_a_minimal_connector_gets_the_defaults() -> None:
    assert api.capabilities_of(Minimal()) == api.Capabilities(
        name="Minimal",
        engines=(),
        binaries=(),
        extension="dump",
        portable=False,
        needs_app_registry=True,
        dump_to_pipe=False,
        restores_while_unpacking=False,
        checks=False,
        forgets=False,
        takes_exclusions=False,
        prepares_copies=False,
    )


@pytest.mark.parametrize("connector", [Everything, Everything()], ids=["class", "instance"])
def test_every_capability_is_detected(connector: object) -> None:
    capabilities = api.capabilities_of(connector)
    assert capabilities == api.Capabilities(
        name="everything",
        engines=("oracle",),
        binaries=("expdp|exp", "impdp"),
        extension="dmp",
        portable=True,
        needs_app_registry=False,
        dump_to_pipe=True,
        restores_while_unpacking=True,
        checks=True,
        forgets=True,
        takes_exclusions=True,
        prepares_copies=True,
    )
    assert capabilities.has_hook("check") and capabilities.has_hook("forget")
    assert not capabilities.follows_unpacking  # check() needs the whole file first


def test_each_hook_and_unpacking_alone() -> None:
    class Checks(Minimal):
        def check(self, db_alias: str, src: Path) -> None:
            pass

    class Follows(Minimal):
        def restore_while_unpacking(self, db_alias: str, unpacking: Any) -> None:
            pass

    checks = api.capabilities_of(Checks())
    assert checks.has_hook("check") and not checks.has_hook("forget")
    assert api.capabilities_of(Follows()).follows_unpacking


def test_builtin_connectors_say_what_they_can() -> None:
    import snapctl
    from snapctl.connectors.postgres.template import PostgresTemplateConnector

    sqlite = api.capabilities_of(snapctl.SQLiteConnector())
    assert sqlite.follows_unpacking and sqlite.extension == "sqlite3"
    postgres = api.capabilities_of(snapctl.PostgresConnector())
    assert postgres.dump_to_pipe and postgres.binaries == ("pg_dump", "pg_restore", "psql")
    assert api.capabilities_of(snapctl.MySQLConnector()).dump_to_pipe
    dumpdata = api.capabilities_of(snapctl.DjangoDumpDataConnector())
    assert dumpdata.takes_exclusions and dumpdata.portable and dumpdata.needs_app_registry
    template = api.capabilities_of(PostgresTemplateConnector())
    assert template.checks and template.forgets and template.extension == "json"
    # Instant restores: the server connectors prepare copies; the file and JSON ones do not.
    assert postgres.prepares_copies and template.prepares_copies
    assert api.capabilities_of(snapctl.MySQLConnector()).prepares_copies
    for connector in (sqlite, dumpdata):
        assert not connector.prepares_copies


def test_reference_import_path_is_the_contract() -> None:
    from snapctl.connectors.protocols import DatabaseConnector

    assert DatabaseConnector is api.DatabaseConnector
    assert isinstance(Minimal(), DatabaseConnector)


def test_wrong_attribute_types_are_one_message_naming_the_connector() -> None:
    class Careless(Minimal):
        name = "careless"
        binaries = "pg_dump"
        engines = ("oracle", 7)
        extension = 3
        portable = "yes"
        check = "later"

    with pytest.raises(ConfigurationError) as raised:
        api.capabilities_of(Careless)
    message = str(raised.value)
    assert message.startswith("connector 'careless' (")
    assert "Careless" in message and "\n" not in message
    for part in (
        "binaries must be a tuple of strings, not 'pg_dump'",
        "engines must be a tuple of strings, not ('oracle', 7)",
        "extension must be a non-empty string, not 3",
        "portable must be True or False, not 'yes'",
        "check must be a method, not 'later'",
    ):
        assert part in message


@pytest.mark.parametrize("attr", ["engines", "binaries"])
def test_sequences_must_not_be_a_single_string_or_number(attr: str) -> None:
    for value in ("sqlite3", 5, {"a": 1}):
        connector = type("Odd", (Minimal,), {attr: value})
        with pytest.raises(ConfigurationError, match=rf"connector 'Odd' .*{attr} must be"):
            api.capabilities_of(connector)
    lists = type("Lists", (Minimal,), {attr: ["a", "b"]})
    assert getattr(api.capabilities_of(lists), attr) == ("a", "b")


def test_a_name_that_is_not_a_string_is_refused() -> None:
    connector = type("Named", (Minimal,), {"name": 42})
    with pytest.raises(ConfigurationError, match=r"connector 'Named' .*name must be a string"):
        api.capabilities_of(connector)


def test_preparing_copies_takes_all_three_methods() -> None:
    class Half(Minimal):
        def prepare_copy(self, db_alias: str, src: Path) -> api.PreparedCopy:
            return api.PreparedCopy("copy")

    with pytest.raises(ConfigurationError, match=r"lacks swap_in_copy\(\), drop_copy\(\)"):
        api.capabilities_of(Half())


def test_readme_shows_the_contract_as_api_py_defines_it() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == contract_docs.replaced(readme), (
        f"README's connector contract is stale: run {contract_docs.COMMAND}"
    )


def test_a_connector_with_wrong_attributes_fails_the_dump_in_one_line(
    sqlite_project: Project, tmp_path: Path
) -> None:
    (tmp_path / "careless_settings.py").write_text(
        "from example_project.settings import *  # noqa\n"
        "class CarelessConnector:\n"
        "    binaries = 'sqlite3'\n"
        "    def dump(self, db_alias, dest):\n"
        "        return {}\n"
        "    def restore(self, db_alias, src):\n"
        "        pass\n"
        "SNAPSHOTS = {'DATABASE_CONNECTORS': {'default': CarelessConnector()}}\n"
    )
    result = sqlite_project.snapctl(
        "--settings", "careless_settings", "--pythonpath", str(tmp_path), "dump"
    )
    assert result.returncode == EXIT_USAGE
    assert result.stderr.count("\n") == 1
    assert "connector 'CarelessConnector'" in result.stderr
    assert "binaries must be a tuple of strings, not 'sqlite3'" in result.stderr


def test_a_property_is_read_from_the_instance_and_not_judged_on_the_class() -> None:
    class ByFormat(Minimal):
        def __init__(self, format: str = "sql") -> None:
            self.format = format

        @property
        def extension(self) -> str:
            return self.format

    assert api.capabilities_of(ByFormat).extension == "dump"
    assert api.capabilities_of(ByFormat("sqlite3")).extension == "sqlite3"


def test_exclusions_add_to_a_connector_that_has_none_yet() -> None:
    """``exclude = None`` means no exclusions yet (api.TakesExclusions), not a crash."""
    from snapctl.operations.loading import add_exclusions
    from snapctl.registry import LoadedConnector

    class Excluding:
        exclude = None

        def dump(self, db_alias: str, dest: Path) -> dict[str, Any]:
            return {}

        def restore(self, db_alias: str, src: Path) -> None:
            pass

    connector = Excluding()
    add_exclusions("excluding", LoadedConnector.of(connector), ["auth"])
    assert connector.exclude == ("auth",)
