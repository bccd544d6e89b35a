"""The dumpdata connector's exclusions: apps ship models that exist on one engine only, or
hold what need not move (a search index); a restore loads what this project can hold."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import EXIT_INTEGRITY, EXIT_OK, EXIT_USAGE, Project, resign


def artifact_of(project: Project, name: str) -> Path:
    return project.snapshots / name / "default.jsonl"


def append_objects(project: Project, name: str, lines: str) -> None:
    """Objects added to an uncompressed snapshot, its manifest made to agree (as a snapshot
    taken on another engine, or with another version of the code, would)."""
    path = artifact_of(project, name)
    with open(path, "a") as artifact:
        artifact.write(lines)
    resign(project.snapshots / name, unpacked_size=path.stat().st_size)


def models_in(project: Project, name: str) -> set[str]:
    lines = artifact_of(project, name).read_text().splitlines()
    return {json.loads(line)["model"] for line in lines}


def test_dump_leaves_out_excluded_models_and_their_links(sqlite_project: Project) -> None:
    full = sqlite_project.dump("--connector", "dumpdata", "--compress", "none")
    assert {"shop.product", "shop.product_tags"} <= models_in(sqlite_project, full)
    name = sqlite_project.dump(
        "--connector", "dumpdata", "--compress", "none", "--exclude", "shop.Product",
        "--exclude", "auth",
    )  # fmt: skip
    models = models_in(sqlite_project, name)
    assert "shop.product" not in models and "shop.product_tags" not in models  # its links too
    assert not any(model.startswith("auth.") for model in models)
    assert {"shop.order", "shop.tag"} <= models
    shown = json.loads(sqlite_project.snapctl("show", name, "--json", check=True).stdout)
    assert shown["databases"]["default"]["metadata"]["excluded"] == ["shop.Product", "auth"]


def test_an_exclusion_must_name_something_and_suit_the_connector(sqlite_project: Project) -> None:
    typo = sqlite_project.snapctl("dump", "--connector", "dumpdata", "--exclude", "shop.Prodcut")
    assert typo.returncode == EXIT_USAGE and "shop.Prodcut" in typo.stderr
    assert len(typo.stderr.splitlines()) == 1
    other = sqlite_project.snapctl("dump", "--exclude", "shop.Product")  # the sqlite connector
    assert other.returncode == EXIT_USAGE and "dumpdata" in other.stderr
    assert sqlite_project.store_entries() == []


def test_objects_of_models_not_here_are_skipped_and_named(sqlite_project: Project) -> None:
    """A snapshot from another engine holds objects of a model only that engine has (as
    Wagtail's SQLite search index): the rest is restored, and stderr says what was not."""
    before = sqlite_project.digest()
    name = sqlite_project.dump("--connector", "dumpdata", "--compress", "none")
    foreign = '{"model": "wagtailsearch.sqliteftsindexentry", "pk": %d, "fields": {}}\n'
    append_objects(sqlite_project, name, "".join(foreign % pk for pk in (1, 2)))
    sqlite_project.manage("seed_shop", "--customers", "2", "--products", "1", "--orders", "2")

    restored = sqlite_project.snapctl("restore", "--yes", name)

    assert restored.returncode == EXIT_OK, restored.stderr
    assert "2 of wagtailsearch.sqliteftsindexentry" in restored.stderr
    assert sqlite_project.digest()["tables"] == before["tables"]


def test_restore_leaves_an_excluded_models_rows_as_they_are(sqlite_project: Project) -> None:
    """--exclude on restore: that model's table keeps its current rows (a user kept across
    the restore), every other table gets the snapshot's."""
    name = sqlite_project.dump("--connector", "dumpdata")
    wanted = sqlite_project.digest()["tables"]
    changes = (
        "from shop.models import Order, Tag; Tag.objects.create(name='snapctl-new'); "
        "Order.objects.all().delete()"
    )
    sqlite_project.manage("shell", "-c", changes)
    current_tags = sqlite_project.digest()["tables"]["shop_tag"]
    restored = sqlite_project.snapctl("restore", "--yes", "--exclude", "shop.Tag", name)
    assert restored.returncode == EXIT_OK, restored.stderr
    after = sqlite_project.digest()["tables"]
    assert after["shop_tag"] == current_tags != wanted["shop_tag"]  # kept, with the new tag
    assert {t: rows for t, rows in after.items() if t != "shop_tag"} == {
        t: rows for t, rows in wanted.items() if t != "shop_tag"
    }


def test_a_line_that_is_no_object_is_refused(sqlite_project: Project) -> None:
    name = sqlite_project.dump("--connector", "dumpdata", "--compress", "none")
    append_objects(sqlite_project, name, "not json\n")
    before = sqlite_project.digest()
    refused = sqlite_project.snapctl("restore", "--yes", name)
    assert refused.returncode == EXIT_INTEGRITY and "is not an object of a model" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert sqlite_project.digest() == before


def test_content_types_load_before_everything_else(sqlite_project: Project, tmp_path: Path) -> None:
    """An app's signal handler may look a content type up while other objects load (Wagtail's
    search indexing does) and create it under another id: content types go first."""
    src = tmp_path / "in.jsonl"
    lines = [
        '{"model": "shop.tag", "pk": 1, "fields": {"name": "a"}}',
        '{"model": "contenttypes.contenttype", "pk": 7, '
        '"fields": {"app_label": "shop", "model": "tag"}}',
        '{"model": "shop.tag", "pk": 2, "fields": {"name": "b"}}',
        '{"model": "nosuch.model", "pk": 1, "fields": {}}',
    ]
    src.write_text("".join(line + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    code = (
        "from pathlib import Path; from snapctl.connectors.dumpdata import _loadable; "
        f"print(_loadable('default', Path({str(src)!r}), Path({str(out)!r}), ()))"
    )
    skipped = sqlite_project.manage("shell", "-v0", "-c", code)
    assert skipped.strip() == "{'nosuch.model': 1}"
    assert out.read_text().splitlines() == [lines[1], lines[0], lines[2]]
    assert not (tmp_path / "out.jsonl.later").exists()


def test_objects_with_fields_the_model_lacks_are_refused_up_front(sqlite_project: Project) -> None:
    """The same model with other fields on another engine (Wagtail's search index): exit 2,
    naming the model, its fields and the --exclude that gets past it; nothing touched."""
    name = sqlite_project.dump("--connector", "dumpdata", "--compress", "none")
    extra_field = '{"model": "shop.tag", "pk": 999, "fields": {"title_text": "x"}}\n'
    append_objects(sqlite_project, name, extra_field)
    sqlite_project.manage("seed_shop", "--customers", "2", "--products", "1", "--orders", "2")
    before = sqlite_project.digest()
    refused = sqlite_project.snapctl("restore", "--yes", name)
    assert refused.returncode == EXIT_USAGE, refused.stderr
    assert "title_text" in refused.stderr and "--exclude shop.Tag" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert sqlite_project.digest() == before
