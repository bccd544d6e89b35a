"""Encrypted snapshots (README, "Encrypted snapshots"): age through pyrage, to age and SSH
public keys, decrypted only with the user's identities.

The fast tier checks the streams and the keys in this process; the end-to-end tests run
snapctl as a person does, on SQLite and on both servers, and compare the data row for row.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import pyrage
import pytest
import zstandard
from helpers import (
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_USAGE,
    Project,
    artifact_path,
    assert_one_line,
    craft_snapshot,
    edited_manifest,
    manifest_of,
    new_store,
    resign,
    run_on_store,
)

from snapctl import compression
from snapctl.encryption import keys, streams
from snapctl.errors import ConfigurationError, IntegrityError

AGE_HEADER = b"age-encryption.org/v1\n"
needs_ssh_keygen = pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="no ssh-keygen")


# --- the streams, in this process -----------------------------------------------------------


def _content(size: int) -> bytes:
    """Compressible, not constant: rows of a dump."""
    return b"".join(b"%08d,customer %d,\xc3\xa9t\xc3\xa9\n" % (i, i * 7) for i in range(size))


@pytest.fixture
def identity() -> Any:
    return pyrage.x25519.Identity.generate()


def _decrypting(identity: Any, plaintext_sha256: str | None) -> compression.Unseal:
    return functools.partial(
        streams.decrypting,
        identities=[identity],
        name="default.sql.zst.age",
        plaintext_sha256=plaintext_sha256 or "",
    )


@pytest.mark.parametrize("method", ["zstd", "gzip", "none"])
def test_every_compression_encrypts_and_decrypts_back(
    tmp_path: Path, identity: Any, method: str
) -> None:
    content = _content(200_000)  # several MB: many chunks through the threads
    src = tmp_path / "dump"
    src.write_bytes(content)

    written = compression.compress(src, tmp_path / "sealed", method, None, [identity.to_public()])

    stored = (tmp_path / "sealed").read_bytes()
    assert stored.startswith(AGE_HEADER)
    assert b"customer 7" not in stored
    assert written.sha256 == hashlib.sha256(stored).hexdigest()
    assert written.size == len(stored)
    plaintext = pyrage.decrypt(stored, [identity])  # what age itself makes of it
    assert written.plaintext_sha256 == hashlib.sha256(plaintext).hexdigest()
    with open(tmp_path / "sealed", "rb") as sealed:
        digest = compression.decompress(
            sealed,
            "x",
            tmp_path / "back",
            method,
            len(content),
            _decrypting(identity, written.plaintext_sha256),
        )
    assert digest == written.sha256
    assert (tmp_path / "back").read_bytes() == content
    assert threading.active_count() == 1


def _sealed(tmp_path: Path, identity: Any) -> tuple[Path, str]:
    src = tmp_path / "dump"
    src.write_bytes(_content(50_000))
    written = compression.compress(src, tmp_path / "sealed", "zstd", None, [identity.to_public()])
    assert written.plaintext_sha256 is not None
    return tmp_path / "sealed", written.plaintext_sha256


def _unpack(path: Path, unseal: compression.Unseal, limit: int | None = None) -> None:
    back = path.with_name("back")
    back.unlink(missing_ok=True)
    with open(path, "rb") as sealed:
        compression.decompress(sealed, "x", back, "zstd", limit, unseal)


def test_altered_or_cut_ciphertext_fails_authentication(tmp_path: Path, identity: Any) -> None:
    path, plaintext_sha256 = _sealed(tmp_path, identity)
    data = path.read_bytes()
    altered = bytearray(data)
    altered[len(data) // 2] ^= 1
    for damaged in (bytes(altered), data[:-100]):
        path.write_bytes(damaged)
        with pytest.raises(IntegrityError, match="fails age's authentication"):
            _unpack(path, _decrypting(identity, plaintext_sha256))
    assert threading.active_count() == 1


def test_another_key_or_another_plaintext_is_refused(tmp_path: Path, identity: Any) -> None:
    path, plaintext_sha256 = _sealed(tmp_path, identity)
    stranger = pyrage.x25519.Identity.generate()
    with pytest.raises(IntegrityError, match="not encrypted to your identity"):
        _unpack(path, _decrypting(stranger, plaintext_sha256))
    # Whole and authentic, but not what the manifest records: another snapshot's artifact.
    with pytest.raises(IntegrityError, match="other bytes than its manifest records"):
        _unpack(path, _decrypting(identity, "0" * 64))


def test_leaving_early_stops_the_decryption(tmp_path: Path, identity: Any) -> None:
    path, plaintext_sha256 = _sealed(tmp_path, identity)
    with pytest.raises(IntegrityError, match="unpacks to more than"):
        _unpack(path, _decrypting(identity, plaintext_sha256), limit=1000)
    assert threading.active_count() == 1


def test_a_full_disk_while_encrypting_is_the_error_raised(identity: Any) -> None:
    class FullDisk:
        def __init__(self) -> None:
            self.written = 0

        def write(self, data: bytes | memoryview) -> int:
            self.written += len(data)
            if self.written > 3 * 1024 * 1024:
                raise OSError(28, "No space left on device")
            return len(data)

    writer = compression.ArtifactWriter(FullDisk(), "none", None, [identity.to_public()])  # type: ignore[arg-type]
    with pytest.raises(OSError, match="No space left"):
        for _ in range(20):
            writer.write(os.urandom(1024 * 1024))
        writer.finish()
    writer.abandon()
    assert threading.active_count() == 1


# --- the keys, in this process --------------------------------------------------------------


@pytest.fixture
def ssh_key(tmp_path: Path) -> Path:
    if not shutil.which("ssh-keygen"):
        pytest.skip("no ssh-keygen")
    path = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bob@example.com", "-f", path],
        check=True,
    )
    return path


def test_recipients_are_keys_or_files_of_them(tmp_path: Path, ssh_key: Path) -> None:
    age_key = str(pyrage.x25519.Identity.generate().to_public())
    ssh_public = ssh_key.with_name("id_ed25519.pub").read_text().strip()
    listing = tmp_path / "team.txt"
    listing.write_text(f"# the team\n\n{age_key}\n{ssh_public}\n")

    found = keys.recipients_from([str(listing), age_key], "SNAPSHOTS['ENCRYPT_TO']")

    bare_ssh = " ".join(ssh_public.split()[:2])
    assert found == (age_key, bare_ssh)  # the comment (an email) is left out, repeats once
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", ssh_key.with_name("id_ed25519.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert keys.describe(bare_ssh) == f"ssh-ed25519 {fingerprint}"


@pytest.mark.parametrize(
    "entry",
    ["age1notakey", "ssh-ed25519 AAAAC3Nza", "/nonexistent/keys.txt", "hunter2"],
)
def test_a_bad_recipient_is_a_usage_error_naming_it(entry: str) -> None:
    with pytest.raises(ConfigurationError, match="--encrypt-to") as raised:
        keys.recipients_from([entry], "--encrypt-to")
    assert "\n" not in str(raised.value)


@needs_ssh_keygen
@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_an_ssh_keys_public_half_is_read_without_the_private_one(tmp_path: Path, kind: str) -> None:
    for passphrase in ("", "secret words"):
        path = tmp_path / f"id_{kind}_{len(passphrase)}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-f", path], check=True)
        public = " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])
        path.with_name(path.name + ".pub").unlink()  # read from the key's own header
        found = keys.identity_files([path])[0]
        assert found.recipients == (public,)
        assert found.passphrase == bool(passphrase)
        if passphrase:
            with pytest.raises(ConfigurationError, match="protected by a passphrase"):
                found.load()
        else:
            assert len(found.load()) == 1


def test_identities_come_from_the_option_the_environment_or_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ssh_key: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.delenv(keys.ENVIRONMENT_VARIABLE, raising=False)
    assert keys.identity_files([]) == []  # nothing there: not an error until one is needed

    mine = keys.default_identity_path()
    public = keys.new_identity(mine)
    assert stat.S_IMODE(mine.stat().st_mode) == 0o600
    (tmp_path / "home" / ".ssh").mkdir()
    shutil.copy(ssh_key, tmp_path / "home" / ".ssh" / "id_ed25519")
    assert [file.path for file in keys.identity_files([])] == [
        mine,
        tmp_path / "home" / ".ssh" / "id_ed25519",
    ]
    assert keys.identity_files([])[0].recipients == (public,)

    other = tmp_path / "other.txt"
    keys.new_identity(other)
    monkeypatch.setenv(keys.ENVIRONMENT_VARIABLE, str(other))
    assert [file.path for file in keys.identity_files([])] == [other]
    assert [file.path for file in keys.identity_files([mine])] == [mine]

    with pytest.raises(ConfigurationError, match="exists already"):
        keys.new_identity(mine)
    with pytest.raises(ConfigurationError, match="cannot read the identity file"):
        keys.identity_files([tmp_path / "missing.txt"])


def test_no_matching_identity_names_the_recipients_not_the_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine.txt"
    keys.new_identity(mine)
    theirs = str(pyrage.x25519.Identity.generate().to_public())
    monkeypatch.setattr(keys, "_chosen", [mine])
    with pytest.raises(ConfigurationError) as raised:
        keys.identities_for([theirs], "the snapshot of 'default'")
    message = str(raised.value)
    assert theirs in message and str(mine) in message
    assert "AGE-SECRET-KEY" not in message


# --- snapshots crafted by hand, no project ---------------------------------------------------


def _encrypted_snapshot(store: Path, recipient: str, content: bytes = b"-- data\n") -> Path:
    name = craft_snapshot(store, content=content)
    snapshot = store / name
    artifact = artifact_path(snapshot)
    plaintext = artifact.read_bytes()
    sealed = artifact.with_name(artifact.name + ".age")
    sealed.write_bytes(pyrage.encrypt(plaintext, [pyrage.x25519.Recipient.from_str(recipient)]))
    sealed.chmod(0o600)
    artifact.unlink()
    encryption = {
        "method": "age",
        "recipients": [recipient],
        "plaintext_sha256": hashlib.sha256(plaintext).hexdigest(),
    }
    with edited_manifest(snapshot) as manifest:
        manifest["databases"]["default"].update(file=sealed.name, encryption=encryption)
    resign(snapshot)
    return snapshot


def test_verify_needs_no_key_and_show_names_the_recipients(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    snapshot = _encrypted_snapshot(store, recipient)

    assert run_on_store(store, "verify").returncode == EXIT_OK
    shown = run_on_store(store, "show")
    assert f"with age, to {recipient}" in shown.stdout
    document = json.loads(run_on_store(store, "show", "--json").stdout)
    assert document["databases"]["default"]["encryption"]["recipients"] == [recipient]
    assert "zstd+age" in run_on_store(store, "list").stdout

    sealed = artifact_path(snapshot)
    data = bytearray(sealed.read_bytes())
    data[-1] ^= 1
    sealed.write_bytes(bytes(data))
    assert run_on_store(store, "verify").returncode == EXIT_INTEGRITY


@pytest.mark.parametrize(
    "encryption",
    [
        {"method": "gpg", "recipients": ["age1x"], "plaintext_sha256": "0" * 64},
        {"method": "age", "recipients": [], "plaintext_sha256": "0" * 64},
        {"method": "age", "recipients": ["AGE-SECRET-KEY-1ABC"], "plaintext_sha256": "0" * 64},
        {"method": "age", "recipients": "age1", "plaintext_sha256": "0" * 64},
        {"method": "age", "recipients": ["ssh-ed25519 AAAA"], "plaintext_sha256": "nope"},
        "age",
    ],
)
def test_a_malformed_encryption_entry_is_a_damaged_snapshot(
    tmp_path: Path, encryption: object
) -> None:
    store = new_store(tmp_path)
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    snapshot = _encrypted_snapshot(store, recipient)
    with edited_manifest(snapshot) as manifest:
        manifest["databases"]["default"]["encryption"] = encryption
    assert_one_line(run_on_store(store, "show"), EXIT_INTEGRITY, "malformed")


def test_an_encrypted_file_name_must_say_so(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    snapshot = _encrypted_snapshot(store, recipient)
    sealed = artifact_path(snapshot)
    plain_name = sealed.name.removesuffix(".age")
    sealed.rename(sealed.with_name(plain_name))
    with edited_manifest(snapshot) as manifest:
        manifest["databases"]["default"]["file"] = plain_name
    assert_one_line(run_on_store(store, "show"), EXIT_INTEGRITY, "encryption")


# --- the command line on the example project --------------------------------------------------


def _keygen(project: Project, path: Path) -> str:
    result = project.snapctl("keygen", "--output", str(path), check=True)
    return result.stdout.strip()


def _stranger_home(tmp_path: Path) -> dict[str, str]:
    """An environment with no identity: an empty home, no SNAPCTL_IDENTITY."""
    home = tmp_path / "stranger"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def _assert_sealed(snapshot: Path) -> None:
    stored = artifact_path(snapshot).read_bytes()
    assert stored.startswith(AGE_HEADER)
    entry = manifest_of(snapshot)["databases"]["default"]
    assert entry["file"].endswith(".age") and entry["encryption"]["method"] == "age"


def test_an_encrypted_snapshot_restores_exactly_with_the_key_only(
    sqlite_project: Project, tmp_path: Path
) -> None:
    identity = tmp_path / "me.txt"
    public = _keygen(sqlite_project, identity)
    secret = identity.read_text()
    before = sqlite_project.digest()
    name = sqlite_project.dump("--encrypt-to", public)
    snapshot = sqlite_project.snapshots / name
    _assert_sealed(snapshot)
    sqlite_project.manage("seed_shop", "--customers", "3", "--products", "2", "--orders", "4")
    changed = sqlite_project.digest()
    stranger = _stranger_home(tmp_path)

    assert sqlite_project.snapctl("verify", **stranger).returncode == EXIT_OK
    refused = sqlite_project.snapctl("restore", "--yes", **stranger)
    assert_one_line(refused, EXIT_USAGE, public, "--identity")
    assert sqlite_project.digest() == changed

    restored = sqlite_project.snapctl("restore", "--yes", "--identity", str(identity), "--json")
    assert restored.returncode == EXIT_OK, restored.stderr
    assert sqlite_project.digest() == before
    # No secret anywhere it could leak: output, manifest, JSON.
    shown = sqlite_project.snapctl("show", "--json", check=True).stdout
    for text in (restored.stdout, restored.stderr, shown, (snapshot / "manifest.json").read_text()):
        assert secret.split()[-1] not in text


def test_the_setting_encrypts_to_a_team_file_and_an_ssh_key_decrypts(
    sqlite_project: Project, tmp_path: Path, ssh_key: Path
) -> None:
    alice = tmp_path / "alice.txt"
    team = tmp_path / "team.txt"
    team.write_text(
        f"# alice\n{_keygen(sqlite_project, alice)}\n"
        f"# bob, by his SSH key\n{ssh_key.with_name('id_ed25519.pub').read_text()}"
    )
    before = sqlite_project.digest()
    dumped = sqlite_project.snapctl("dump", check=True, EXAMPLE_ENCRYPT_TO=str(team))
    name = dumped.stdout.strip()
    snapshot = sqlite_project.snapshots / name
    _assert_sealed(snapshot)
    recipients = manifest_of(snapshot)["databases"]["default"]["encryption"]["recipients"]
    assert len(recipients) == 2 and "bob@example.com" not in json.dumps(recipients)
    sqlite_project.manage("seed_shop", "--customers", "2", "--products", "1", "--orders", "1")

    # Bob's default SSH key finds itself among the recipients.
    home = tmp_path / "bob"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(ssh_key, home / ".ssh" / "id_ed25519")
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    bob = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    assert sqlite_project.snapctl("restore", "--yes", **bob).returncode == EXIT_OK
    assert sqlite_project.digest() == before


@pytest.mark.parametrize("options", [("--compress", "gzip"), ("--compress", "none")])
def test_second_pass_and_uncompressed_artifacts_are_encrypted_too(
    sqlite_project: Project, tmp_path: Path, options: tuple[str, ...]
) -> None:
    identity = tmp_path / "me.txt"
    public = _keygen(sqlite_project, identity)
    before = sqlite_project.digest()
    name = sqlite_project.dump("--encrypt-to", public, *options)
    _assert_sealed(sqlite_project.snapshots / name)
    sqlite_project.manage("seed_shop", "--customers", "1", "--products", "1", "--orders", "1")
    restored = sqlite_project.snapctl("restore", "--yes", SNAPCTL_IDENTITY=str(identity))
    assert restored.returncode == EXIT_OK, restored.stderr
    assert sqlite_project.digest() == before


def test_a_swapped_artifact_is_refused_before_the_database_is_touched(
    sqlite_project: Project, tmp_path: Path
) -> None:
    """Someone who can write the store replaces the artifact with another encrypted to the
    same public key (public keys are public) and makes size and checksum agree: the
    plaintext's recorded sha256 gives it away."""
    identity = tmp_path / "me.txt"
    public = _keygen(sqlite_project, identity)
    first = sqlite_project.snapshots / sqlite_project.dump("--encrypt-to", public)
    sqlite_project.manage("seed_shop", "--customers", "4", "--products", "1", "--orders", "1")
    second = sqlite_project.snapshots / sqlite_project.dump("--encrypt-to", public)
    changed = sqlite_project.digest()

    resign(first, content=artifact_path(second).read_bytes())
    refused = sqlite_project.snapctl("restore", first.name, "--yes", "--identity", str(identity))
    assert_one_line(refused, EXIT_INTEGRITY, "other bytes than its manifest records")
    assert sqlite_project.digest() == changed


def test_an_identity_that_is_not_a_recipient_is_a_usage_error(
    sqlite_project: Project, tmp_path: Path
) -> None:
    public = _keygen(sqlite_project, tmp_path / "me.txt")
    other = tmp_path / "other.txt"
    _keygen(sqlite_project, other)
    sqlite_project.dump("--encrypt-to", public)
    refused = sqlite_project.snapctl("restore", "--yes", "--identity", str(other))
    assert_one_line(refused, EXIT_USAGE, public, str(other))
    bad = sqlite_project.snapctl("dump", "--encrypt-to", "age1nope")
    assert_one_line(bad, EXIT_USAGE, "--encrypt-to", "age1nope")


def test_the_artifact_holds_no_plaintext(sqlite_project: Project, tmp_path: Path) -> None:
    identity = pyrage.x25519.Identity.generate()
    name = sqlite_project.dump("--encrypt-to", str(identity.to_public()), "--compress", "none")
    stored = artifact_path(sqlite_project.snapshots / name).read_bytes()
    assert b"SQLite format 3" not in stored
    assert pyrage.decrypt(stored, [identity]).startswith(b"SQLite format 3\x00")


def _round_trip_on_server(project: Project, tmp_path: Path, *dump_options: str) -> None:
    identity = tmp_path / "me.txt"
    public = _keygen(project, identity)
    before = project.digest()
    name = project.dump("--encrypt-to", public, *dump_options)
    snapshot = project.snapshots / name
    _assert_sealed(snapshot)
    packed = pyrage.decrypt(artifact_path(snapshot).read_bytes(), [_age_identity(identity)])
    assert zstandard.ZstdDecompressor().decompressobj().decompress(packed)  # a real zstd stream
    project.manage("seed_shop", "--customers", "3", "--products", "2", "--orders", "5")
    changed = project.digest()
    refused = project.snapctl("restore", "--yes", **_stranger_home(tmp_path))
    assert_one_line(refused, EXIT_USAGE, public)
    assert project.digest() == changed
    restored = project.snapctl("restore", "--yes", "--identity", str(identity))
    assert restored.returncode == EXIT_OK, restored.stderr
    assert project.digest() == before


def _age_identity(path: Path) -> Any:
    secret = next(line for line in path.read_text().splitlines() if line.startswith("AGE-"))
    return pyrage.x25519.Identity.from_str(secret)


def test_postgres_encrypted_round_trip(postgres_project: Project, tmp_path: Path) -> None:
    _round_trip_on_server(postgres_project, tmp_path)


def test_mariadb_encrypted_round_trip(mariadb_project: Project, tmp_path: Path) -> None:
    _round_trip_on_server(mariadb_project, tmp_path)


def test_server_side_copies_cannot_be_encrypted(postgres_project: Project) -> None:
    public = str(pyrage.x25519.Identity.generate().to_public())
    refused = postgres_project.snapctl(
        "dump", "--connector", "postgres-template", "--encrypt-to", public
    )
    assert_one_line(refused, EXIT_USAGE, "postgres-template", "encryption")
    assert postgres_project.store_entries() == []


def test_a_private_key_given_as_a_recipient_is_never_echoed(tmp_path: Path) -> None:
    identity = tmp_path / "identity.txt"
    keys.new_identity(identity)
    secret = next(line for line in identity.read_text().splitlines() if line.startswith("AGE-"))
    for entry in (str(identity), secret):
        with pytest.raises(ConfigurationError, match="private key") as raised:
            keys.recipients_from([entry], "--encrypt-to")
        assert secret[16:30] not in str(raised.value)


@pytest.mark.parametrize(
    "recipient",
    [
        "ssh-ed25519 AAAAA",  # not base64
        "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ==",  # base64 of an ssh-rsa key's header
    ],
)
def test_an_ssh_recipient_must_hold_a_key_of_its_type(tmp_path: Path, recipient: str) -> None:
    store = new_store(tmp_path)
    snapshot = _encrypted_snapshot(store, str(pyrage.x25519.Identity.generate().to_public()))
    with edited_manifest(snapshot) as manifest:
        manifest["databases"]["default"]["encryption"]["recipients"] = [recipient]
    assert_one_line(run_on_store(store, "show"), EXIT_INTEGRITY, "malformed")
