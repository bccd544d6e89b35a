"""Snapshots in S3 (django-storages) against a real S3 API on loopback (moto's server)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    EXAMPLE,
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Project,
)

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")
pytest.importorskip("storages")

SECRET = "s3cr3t-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="snapctl",
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"snaps-{secrets.token_hex(4)}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "EXAMPLE_S3_BUCKET": bucket,
        "EXAMPLE_S3_ENDPOINT": endpoint,
        "EXAMPLE_S3_ACCESS_KEY": "snapctl",
        "EXAMPLE_S3_SECRET_KEY": SECRET,
    }


@pytest.fixture
def remote(sqlite_project: Project, s3_endpoint: str, bucket: str) -> Project:
    """The example project with SNAPSHOTS['STORAGE'] pointing at the bucket."""
    env = {k: v for k, v in sqlite_project.env.items() if k != "SNAPCTL_DIR"}
    env.update(s3_env(s3_endpoint, bucket))
    return Project(env=env, snapshots=Path("/nonexistent"), extra={"bucket": bucket})


def keys(endpoint: str, bucket: str) -> list[str]:
    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_dump_list_verify_restore_through_s3(
    remote: Project, s3_endpoint: str, tmp_path: Path
) -> None:
    before = remote.digest()
    name = remote.dump("--label", "shared")
    bucket = remote.extra["bucket"]
    assert keys(s3_endpoint, bucket) == [
        f"snapshots/{name}/default.sqlite3.zst",
        f"snapshots/{name}/manifest.json",
    ]
    listed = json.loads(remote.snapctl("list", "--json", check=True).stdout)
    assert [s["name"] for s in listed] == [name]
    assert listed[0]["path"] == f"s3://{bucket}/snapshots/{name}"
    assert remote.snapctl("verify", check=True).stdout.split() == [name, "ok"]
    assert json.loads(remote.snapctl("show", "shared", "--json", check=True).stdout)["name"] == name

    # Another checkout of the project, with its own database, restores from the bucket.
    other_db = tmp_path / "other-checkout.sqlite3"
    other = Project(env={**remote.env, "EXAMPLE_DB_NAME": str(other_db)}, snapshots=Path("/x"))
    other.manage("migrate", "--no-input", "-v0")
    assert other.digest() != before
    # Its database is another file: the label alone means none of its own snapshots.
    refused = other.snapctl("restore", "shared", "--yes")
    assert refused.returncode == EXIT_USAGE and "--from-any" in refused.stderr
    other.snapctl("restore", "shared", "--from-any", "--yes", check=True)
    assert other.digest() == before


def test_damaged_remote_artifact_is_refused(remote: Project, s3_endpoint: str) -> None:
    name = remote.dump()
    key = f"snapshots/{name}/default.sqlite3.zst"
    client = s3_client(s3_endpoint)
    data = bytearray(client.get_object(Bucket=remote.extra["bucket"], Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    client.put_object(Bucket=remote.extra["bucket"], Key=key, Body=bytes(data))
    remote.manage("seed_shop", "--customers", "1", "--products", "0", "--orders", "0")
    current = remote.digest()

    verified = remote.snapctl("verify")
    restored = remote.snapctl("restore", "--yes")

    assert verified.returncode == EXIT_INTEGRITY and "checksum" in verified.stderr
    assert restored.returncode == EXIT_INTEGRITY
    assert remote.digest() == current


def test_delete_and_prune_remove_remote_objects(remote: Project, s3_endpoint: str) -> None:
    names = [remote.dump() for _ in range(3)]
    remote.snapctl("delete", names[0], "--yes", check=True)
    dry = json.loads(remote.snapctl("prune", "--keep", "1", "--dry-run", "--json").stdout)
    assert dry["would_delete"] == [names[1]]
    remote.snapctl("prune", "--keep", "1", "--yes", check=True)
    assert keys(s3_endpoint, remote.extra["bucket"]) == [
        f"snapshots/{names[2]}/default.sqlite3.zst",
        f"snapshots/{names[2]}/manifest.json",
    ]


INTERRUPTING_SETTINGS = """
from example_project.settings import *  # noqa: F403
from storages.backends.s3 import S3Storage


class DiesBeforeTheManifest(S3Storage):
    def _save(self, name, content):
        if name.endswith("manifest.json"):
            raise ConnectionError("the network went away")
        return super()._save(name, content)


STORAGES["snapshots"]["BACKEND"] = "interrupting_settings.DiesBeforeTheManifest"  # noqa: F405
"""


def test_an_interrupted_upload_leaves_nothing_listed(
    remote: Project, s3_endpoint: str, tmp_path: Path
) -> None:
    (tmp_path / "interrupting_settings.py").write_text(INTERRUPTING_SETTINGS)
    result = remote.snapctl(
        "--settings", "interrupting_settings", "--pythonpath", str(tmp_path), "dump"
    )
    assert result.returncode == EXIT_FAILED
    assert "the network went away" in result.stderr and len(result.stderr.splitlines()) == 1
    assert json.loads(remote.snapctl("list", "--json", check=True).stdout) == []
    assert keys(s3_endpoint, remote.extra["bucket"]) == []  # the artifact was taken back


SLOW_SETTINGS = """
import time

from example_project.settings import *  # noqa: F403
from storages.backends.s3 import S3Storage


class SlowBeforeTheManifest(S3Storage):
    def _save(self, name, content):
        if name.endswith("manifest.json"):
            time.sleep(60)
        return super()._save(name, content)


STORAGES["snapshots"]["BACKEND"] = "slow_settings.SlowBeforeTheManifest"  # noqa: F405
"""


def test_a_killed_upload_leaves_nothing_listed(
    remote: Project, s3_endpoint: str, tmp_path: Path
) -> None:
    (tmp_path / "slow_settings.py").write_text(SLOW_SETTINGS)
    bucket = remote.extra["bucket"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snapctl",
            "--settings",
            "slow_settings",
            "--pythonpath",
            str(tmp_path),
            "dump",
        ],
        cwd=EXAMPLE,
        env=remote.env,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not keys(s3_endpoint, bucket) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()  # the artifact is uploaded, the manifest is not
    proc.wait()
    uploaded = keys(s3_endpoint, bucket)
    assert len(uploaded) == 1 and uploaded[0].endswith("default.sqlite3.zst")
    assert json.loads(remote.snapctl("list", "--json", check=True).stdout) == []
    assert remote.snapctl("restore", "--yes").returncode == EXIT_USAGE  # no snapshot to restore
    name = remote.dump()  # and the next dump works
    assert [s["name"] for s in json.loads(remote.snapctl("list", "--json").stdout)] == [name]


def test_credentials_are_never_printed(remote: Project) -> None:
    remote.dump()
    wrong = {**remote.env, "EXAMPLE_S3_BUCKET": "no-such-bucket"}
    project = Project(env=wrong, snapshots=Path("/x"))
    for args in (("list",), ("dump",), ("restore", "--yes")):
        result = project.snapctl(*args)
        assert result.returncode in (EXIT_FAILED, EXIT_USAGE), result.stderr
        assert SECRET not in result.stderr + result.stdout
        assert len(result.stderr.splitlines()) == 1, result.stderr


SLOW_PARTS_SETTINGS = """
import time

from boto3.s3.transfer import TransferConfig
from example_project.settings import *  # noqa: F403
from storages.backends.s3 import S3Storage


class SlowParts(S3Storage):
    \"\"\"Every upload in parts, each part held back a few seconds: the artifact is caught
    mid-multipart.\"\"\"

    def __init__(self, **settings):
        super().__init__(**settings)
        self.transfer_config = TransferConfig(multipart_threshold=1024)

    @property
    def connection(self):
        connection = super().connection
        events = connection.meta.client.meta.events
        events.register_first("before-call.s3.UploadPart", _slow, unique_id="slow-parts")
        return connection


def _slow(**kwargs):
    time.sleep(4)


STORAGES["snapshots"]["BACKEND"] = "slow_parts_settings.SlowParts"  # noqa: F405
"""


def test_sigterm_mid_multipart_upload_leaves_nothing(
    remote: Project, s3_endpoint: str, tmp_path: Path
) -> None:
    (tmp_path / "slow_parts_settings.py").write_text(SLOW_PARTS_SETTINGS)
    temp = tmp_path / "tmp"
    temp.mkdir()
    bucket = remote.extra["bucket"]
    client = s3_client(s3_endpoint)
    proc = subprocess.Popen(
        [sys.executable, "-m", "snapctl", "--settings", "slow_parts_settings",
         "--pythonpath", str(tmp_path), "dump"],
        cwd=EXAMPLE,
        env={**remote.env, "TMPDIR": str(temp)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if client.list_multipart_uploads(Bucket=bucket).get("Uploads"):
            break
        time.sleep(0.05)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads"), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_TERMINATED, err
    assert err.strip() == "snapctl: terminated", err
    assert out == ""  # no snapshot named: none was made
    time.sleep(0.5)  # what the process asked S3 to drop, dropped
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert keys(s3_endpoint, bucket) == []
    lock_dir = f"snapctl-{os.getuid()}"  # per-user locks, not this process's scratch
    assert [p.name for p in temp.glob("snapctl-*") if p.name != lock_dir] == []


SLOW_READ_SETTINGS = """
import os
import time
from pathlib import Path

from example_project.settings import *  # noqa: F403
from storages.backends.s3 import S3Storage


class SlowArtifactReads(S3Storage):
    \"\"\"Says when it starts reading an artifact, then takes a minute: a restore mid-read.\"\"\"

    def _open(self, name, mode="rb"):
        if not name.endswith("manifest.json"):
            Path(os.environ["READING_MARKER"]).touch()
            time.sleep(60)
        return super()._open(name, mode)


STORAGES["snapshots"]["BACKEND"] = "slow_read_settings.SlowArtifactReads"  # noqa: F405
"""


def test_prune_and_delete_wait_for_a_restore_reading_the_same_bucket(
    remote: Project, s3_endpoint: str, tmp_path: Path
) -> None:
    """Each process has its own scratch directory: only a lock on the bucket and prefix
    makes a prune in one see the restore in another."""
    (tmp_path / "slow_read_settings.py").write_text(SLOW_READ_SETTINGS)
    temp, marker = tmp_path / "tmp", tmp_path / "reading"
    temp.mkdir()
    names = [remote.dump(), remote.dump()]
    bucket = remote.extra["bucket"]
    before = keys(s3_endpoint, bucket)
    env = {**remote.env, "TMPDIR": str(temp)}  # the same user's lock directory for all
    reader = subprocess.Popen(
        [sys.executable, "-m", "snapctl", "--settings", "slow_read_settings",
         "--pythonpath", str(tmp_path), "restore", "--yes"],
        cwd=EXAMPLE,
        env={**env, "READING_MARKER": str(marker)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and reader.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), reader.communicate()[1]
        pruned = remote.snapctl("prune", "--keep", "0", "--yes", TMPDIR=str(temp))
        deleted = remote.snapctl("delete", names[1], "--yes", TMPDIR=str(temp))
    finally:
        reader.kill()
        reader.wait()
    for result in (pruned, deleted):
        assert result.returncode == EXIT_FAILED, result.stderr
        assert "being read" in result.stderr and len(result.stderr.splitlines()) == 1
        assert f"s3://{bucket}/snapshots" in result.stderr
    assert keys(s3_endpoint, bucket) == before
    remote.snapctl("delete", names[1], "--yes", TMPDIR=str(temp), check=True)  # free again


def test_delete_removes_nested_objects_of_the_snapshot(remote: Project, s3_endpoint: str) -> None:
    kept, doomed = remote.dump(), remote.dump()
    bucket = remote.extra["bucket"]
    client = s3_client(s3_endpoint)
    for nested in ("extra/part-1", "extra/deeper/part-2", "extra/deeper/part-3"):
        client.put_object(Bucket=bucket, Key=f"snapshots/{doomed}/{nested}", Body=b"x")
    remote.snapctl("delete", doomed, "--yes", check=True)
    assert [k for k in keys(s3_endpoint, bucket) if k.startswith(f"snapshots/{doomed}/")] == []
    assert keys(s3_endpoint, bucket) == [
        f"snapshots/{kept}/default.sqlite3.zst",
        f"snapshots/{kept}/manifest.json",
    ]


def test_delete_never_follows_a_key_out_of_the_snapshot(remote: Project, s3_endpoint: str) -> None:
    """S3 keys may hold '..': the storage normalizes names, so following one from inside a
    snapshot's prefix would delete other snapshots."""
    kept, doomed = remote.dump(), remote.dump()
    bucket = remote.extra["bucket"]
    client = s3_client(s3_endpoint)
    planted = [f"snapshots/{doomed}/../{kept}/x", f"snapshots/{doomed}/a\\..\\..\\{kept}/x"]
    for key in planted:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    remote.snapctl("delete", doomed, "--yes", check=True)
    assert keys(s3_endpoint, bucket) == sorted(
        [f"snapshots/{kept}/default.sqlite3.zst", f"snapshots/{kept}/manifest.json", *planted]
    )
    assert remote.snapctl("verify", kept).returncode == EXIT_OK


def test_oversized_remote_objects_are_refused(remote: Project, s3_endpoint: str) -> None:
    from snapctl.store.manifest import MAX_MANIFEST

    name = remote.dump()
    bucket = remote.extra["bucket"]
    client = s3_client(s3_endpoint)
    key = f"snapshots/{name}/default.sqlite3.zst"
    data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=data * 3)
    remote.manage("seed_shop", "--customers", "1", "--products", "0", "--orders", "0")
    current = remote.digest()

    restored = remote.snapctl("restore", "--yes")
    verified = remote.snapctl("verify")

    for result in (restored, verified):
        assert result.returncode == EXIT_INTEGRITY, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert f"{key} is larger than" in result.stderr + result.stdout
        assert "restore another snapshot" in result.stderr + result.stdout
    assert remote.digest() == current

    # A manifest no snapshot could have: never read whole, and the snapshot left out.
    planted = "20300101T000000.000Z"
    manifest = f"snapshots/{planted}/manifest.json"
    client.put_object(Bucket=bucket, Key=manifest, Body=b" " * (MAX_MANIFEST + 1))
    listed = json.loads(remote.snapctl("list", "--json", check=True).stdout)
    assert [s["name"] for s in listed] == [name]
    shown = remote.snapctl("show", planted)
    assert shown.returncode == EXIT_INTEGRITY
    assert len(shown.stderr.splitlines()) == 1, shown.stderr
    assert f"{manifest} is larger than {MAX_MANIFEST} bytes" in shown.stderr


def test_completion_offers_the_buckets_snapshots(remote: Project) -> None:
    """Completion reads the store the command would: the bucket SNAPSHOTS['STORAGE'] names."""
    from test_completion import bash_complete, need

    need("bash")
    name = remote.dump("--label", "inbucket")
    env = {k: v for k, v in remote.env.items() if k.startswith(("EXAMPLE_", "SNAPCTL_"))}
    assert bash_complete("snapctl restore ", **env) == [name, "latest", "inbucket"]
