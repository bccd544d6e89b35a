"""Property-based tests: names, labels, manifests and references, with hypothesis."""

from __future__ import annotations

import contextlib
import json
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from snapctl.errors import ConfigurationError, IntegrityError, SnapshotNotFound
from snapctl.store import SnapshotStore, is_snapshot_name, snapshot_name, validate_label
from snapctl.store.manifest import FORMAT_VERSION, MANIFEST

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)
)
labels = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)


@given(moments, st.none() | labels)
def test_names_are_recognised_and_carry_their_label(moment: datetime, label: str | None) -> None:
    name = snapshot_name(moment, label)
    assert is_snapshot_name(name)
    assert name.endswith(f"Z-{label}") if label else name.endswith("Z")
    assert Path(name).name == name and not name.startswith(".")


@given(moments, moments, st.none() | labels)
def test_names_sort_by_time(first: datetime, second: datetime, label: str | None) -> None:
    a, b = snapshot_name(first, label), snapshot_name(second, label)
    whole_ms = timedelta(milliseconds=1)
    if second - first >= whole_ms:
        assert a < b
    elif first - second >= whole_ms:
        assert a > b


@given(st.text(max_size=80))
def test_labels_are_safe_or_refused(text: str) -> None:
    try:
        label = validate_label(text)
    except ConfigurationError:
        return
    name = snapshot_name(datetime(2026, 1, 1, tzinfo=timezone.utc), label)
    assert "/" not in label and "\\" not in label and "\x00" not in label
    assert not label.startswith((".", "-"))
    assert Path(name).name == name and is_snapshot_name(name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
NAME = "20260101T000000.000Z"


def _good_manifest() -> dict[str, object]:
    return {
        "format_version": FORMAT_VERSION,
        "name": NAME,
        "label": None,
        "created": "2026-01-01T00:00:00+00:00",
        "snapctl_version": "0.1.0",
        "django_version": "5.2",
        "databases": {
            "default": {
                "file": "default.sqlite3.zst",
                "compression": "zstd",
                "size": 10,
                "sha256": "0" * 64,
                "connector": {"name": "sqlite", "source": "built-in", "class": "x:Y"},
                "engine": "django.db.backends.sqlite3",
                "vendor": "sqlite",
                "server_version": None,
                "metadata": {},
            }
        },
    }


def _load(text: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / NAME).mkdir()
        (Path(root) / NAME / MANIFEST).write_text(text, encoding="utf-8")
        SnapshotStore(Path(root)).load(NAME)


@settings(max_examples=200)
@given(json_values)
def test_any_json_manifest_loads_or_is_an_integrity_error(value: object) -> None:
    with contextlib.suppress(IntegrityError):
        _load(json.dumps(value))


@settings(max_examples=200)
@given(
    st.sampled_from(["format_version", "name", "created", "databases", "django_version"]),
    json_values,
)
def test_a_manifest_with_one_field_replaced_loads_or_is_an_integrity_error(
    field: str, value: object
) -> None:
    manifest = _good_manifest()
    manifest[field] = value
    with contextlib.suppress(IntegrityError):
        _load(json.dumps(manifest))


@given(st.text(max_size=30).filter(lambda t: "/" not in t and "\x00" not in t))
def test_artifact_file_names_never_leave_the_snapshot(file: str) -> None:
    manifest = _good_manifest()
    manifest["databases"]["default"]["file"] = file  # type: ignore[index]
    try:
        _load(json.dumps(manifest))
    except IntegrityError:
        return
    assert Path(file).name == file and not file.startswith(".")


def test_the_good_manifest_loads() -> None:
    _load(json.dumps(_good_manifest()))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(moments, st.none() | labels), min_size=1, max_size=6, unique_by=lambda t: t[0]
    ),
    st.text(max_size=30),
)
def test_references_resolve_to_a_snapshot_or_say_not_found(
    made: list[tuple[datetime, str | None]], reference: str
) -> None:
    with tempfile.TemporaryDirectory() as root:
        names = {snapshot_name(moment, label) for moment, label in made}
        for name in names:
            (Path(root) / name).mkdir()
        store = SnapshotStore(Path(root))
        assert store.resolve_name(None) == store.resolve_name("latest") == max(names)
        for name in names:
            assert store.resolve_name(name) == name
        try:
            resolved = store.resolve_name(reference)
        except SnapshotNotFound:
            return
        assert reference.strip()  # a blank reference never stands for a snapshot
        assert resolved in names
        assert (
            resolved == reference
            or resolved.startswith(reference)
            or resolved.endswith(f"Z-{reference}")
            or reference == "latest"
        )
