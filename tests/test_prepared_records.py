"""The records of prepared copies and the room check, without a server: what a kill leaves,
what a damaged or planted record does, and when a disk counts as nearly full."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from snapctl.connectors import _disk_room
from snapctl.connectors.api import PreparedCopy
from snapctl.errors import ConfigurationError
from snapctl.prepared_copies import CopyRecord, Records

DATABASE = {"vendor": "postgresql", "name": "shop", "host": "", "port": ""}


def record(**changes: object) -> CopyRecord:
    fields: dict[str, object] = {
        "kind": "prepared",
        "state": "preparing",
        "alias": "default",
        "database": DATABASE,
        "connector": "postgres",
        "mark": "sha256:ab token:cd",
        "snapshot": "20261203T000000.000Z",
        "sha256": "ab",
    }
    fields.update(changes)
    return CopyRecord(**fields)  # type: ignore[arg-type]


def test_a_record_round_trips_and_is_found_by_database(tmp_path: Path) -> None:
    records = Records(tmp_path)
    copy = PreparedCopy("shop_snapctl_prep_0123abcd", "sha256:ab token:cd", 42, {"k": 1})
    written = record().with_copy(copy)
    records.write(written)
    (found,) = records.of_database(DATABASE)
    assert found == written and found.size == 42
    assert found.prepared_copy == copy
    assert records.of_database({**DATABASE, "name": "other"}) == []
    assert oct((tmp_path / written.file_name).stat().st_mode & 0o777) == "0o600"
    records.remove(written)
    assert records.all() == []


def test_damaged_and_misnamed_records_are_ignored(tmp_path: Path) -> None:
    records = Records(tmp_path)
    good = record()
    records.write(good)
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "x.json").write_text(json.dumps({"kind": "prepared"}))
    # A record copied under another name (to make it stand for another database) is not read.
    (tmp_path / f"{'0' * 16}.{good.token}.json").write_bytes(
        (tmp_path / good.file_name).read_bytes()
    )
    (tmp_path / "link.json").symlink_to(tmp_path / good.file_name)
    assert records.all() == [good]


def test_a_preparation_is_under_way_only_while_its_process_lives(tmp_path: Path) -> None:
    records = Records(tmp_path)
    under_way = record()
    assert not records.under_way(under_way)
    with records.working_on(under_way):
        assert records.under_way(under_way)
    assert not records.under_way(under_way)
    # A process that holds it and is killed: the kernel lets go.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    token = holder.stdout.readline().strip()
    held = record(token=token)
    assert records.under_way(held)
    holder.kill()
    holder.wait()
    assert not records.under_way(held)


HOLD = """
import sys, time
from pathlib import Path
from snapctl.prepared_copies import CopyRecord, Records
r = CopyRecord(kind="prepared", state="preparing", alias="default",
               database={"vendor": "postgresql", "name": "shop", "host": "", "port": ""},
               connector="postgres")
records = Records(Path(sys.argv[1]))
with records.working_on(r):
    print(r.token, flush=True)
    time.sleep(60)
"""


def test_the_state_directory_must_be_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from snapctl.prepared_copies import state_dir

    monkeypatch.setenv("SNAPCTL_STATE_DIR", str(tmp_path / "state"))
    made = state_dir()
    assert made == tmp_path / "state" / "copies" and oct(made.stat().st_mode & 0o777) == "0o700"
    os.chmod(made, 0o777)
    with pytest.raises(ConfigurationError, match="not a private directory"):
        state_dir()


@pytest.mark.parametrize(
    ("needed", "free", "total", "ok"),
    [
        (10, 100, 1000, True),  # 90 left of 1000: more than 5%
        (60, 100, 1000, False),  # 40 left: less than 50
        (0, 49, 1000, False),
    ],
)
def test_room_leaves_a_share_of_the_disk(needed: int, free: int, total: int, ok: bool) -> None:
    problem = _disk_room.room_problem(needed, free, total, 0.05)
    assert (problem is None) == ok
    if problem:
        assert "more is needed" in problem


def test_room_is_checked_only_for_a_local_server(tmp_path: Path) -> None:
    _disk_room.check_room("'default'", "db.example.com", str(tmp_path), 10**18, 0.05)
    _disk_room.check_room("'default'", "127.0.0.1", None, 10**18, 0.05)
    with pytest.raises(ConfigurationError, match=r"not enough room .* 'default'"):
        _disk_room.check_room("'default'", "127.0.0.1", str(tmp_path), 10**18, 0.05)
