"""Who a snapshot is encrypted to, and which of the user's identities can decrypt it.

Recipients are public: age keys (``age1...``) and SSH public keys (``ssh-ed25519 ...``,
``ssh-rsa ...``), given as they are or as files of them, one per line (``#`` comments), as
``age -R`` reads them. They are recorded in the manifest without SSH comments (which often
hold an email address).

Identities are private: an age identity file (``AGE-SECRET-KEY-1...`` lines, as ``age-keygen``
and ``snapctl keygen`` write them) or an SSH private key without a passphrase. Only their
public halves are read to find the ones a snapshot is encrypted to; a private key is parsed
only when it is needed, and never shown, logged or put on a command line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snapctl.encryption import ssh_keys
from snapctl.errors import ConfigurationError

ENVIRONMENT_VARIABLE = "SNAPCTL_IDENTITY"
# age's recipients are Bech32: "age1" and 58 characters of its alphabet.
AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")
_AGE_SECRET = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+")
# An identity or recipients file is a few keys: far below this.
_MAX_KEY_FILE = 256 * 1024


def is_recipient(text: str) -> bool:
    """Whether ``text`` is a recipient as a manifest records it: an age key, or an SSH key
    whose base64 holds a key of the type it names."""
    if AGE_RECIPIENT.fullmatch(text):
        return True
    return ssh_keys.is_public_key(text)


def recipients_from(entries: Iterable[str], where: str) -> tuple[str, ...]:
    """The recipients ``entries`` give (keys, or files of keys), checked and without
    repeats; anything else is a :class:`ConfigurationError` naming ``where`` it came from."""
    found: dict[str, None] = {}
    for entry in entries:
        text = entry.strip()
        if _is_private(text):  # never echoed: it is a secret
            raise ConfigurationError(f"{where}: that is a private key; give its public key")
        keys = [text] if _looks_like_key(text) else _recipients_file(text, where)
        for key in keys:
            found[_checked_recipient(key, where)] = None
    return tuple(found)


def recipients_for_dump(extra: Sequence[str]) -> tuple[str, ...]:
    """The recipients a dump encrypts to: ``SNAPSHOTS['ENCRYPT_TO']`` (a key, a file, or a
    list of them) and ``extra`` (``--encrypt-to``); none means no encryption."""
    from snapctl.django_env import snapshot_settings

    configured = snapshot_settings().get("ENCRYPT_TO") or ()
    if isinstance(configured, str | os.PathLike):
        configured = (configured,)
    if not isinstance(configured, list | tuple) or not all(
        isinstance(entry, str | os.PathLike) for entry in configured
    ):
        raise ConfigurationError(
            "SNAPSHOTS['ENCRYPT_TO'] must be a public key, a file of them, or a list of these"
        )
    recipients = recipients_from([str(entry) for entry in configured], "SNAPSHOTS['ENCRYPT_TO']")
    return tuple(dict.fromkeys((*recipients, *recipients_from(extra, "--encrypt-to"))))


def _looks_like_key(text: str) -> bool:
    return text.startswith(("age1", "ssh-"))


def _recipients_file(text: str, where: str) -> list[str]:
    path = Path(text).expanduser()
    try:
        lines = _read_key_file(path).splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"{where}: {text!r} is neither a public key (age1..., ssh-ed25519 ..., ssh-rsa ...) "
            f"nor a readable file of them ({_reason(exc)})"
        ) from exc
    keys = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if any(_is_private(key) for key in keys):  # never echoed: it is a secret
        raise ConfigurationError(
            f"{where}: {path} holds a private key; give the public key instead (age-keygen "
            "-y FILE, or the first line of a snapctl keygen file)"
        )
    if not keys:
        raise ConfigurationError(f"{where}: the recipients file {path} holds no public key")
    return keys


def _is_ssh_private(text: str) -> bool:
    return "PRIVATE KEY-----" in text


def _is_private(text: str) -> bool:
    return bool(_AGE_SECRET.search(text)) or "PRIVATE KEY" in text


def _checked_recipient(key: str, where: str) -> str:
    """``key`` as the manifest records it (an SSH key without its comment), once pyrage
    accepts it."""
    parts = key.split()
    normalized = " ".join(parts[:2]) if key.startswith("ssh-") else key
    if is_recipient(normalized):
        try:
            parse_recipient(normalized)
            return normalized
        except ConfigurationError:
            pass
    if _is_private(key):
        raise ConfigurationError(f"{where}: that is a private key; give its public key instead")
    raise ConfigurationError(
        f"{where}: {_shortened(key)!r} is not an age or SSH (ed25519, rsa) public key"
    )


def parse_recipient(recipient: str) -> Any:
    """The pyrage recipient for a recipient string a manifest or setting gives."""
    import pyrage

    try:
        if recipient.startswith("age1"):
            return pyrage.x25519.Recipient.from_str(recipient)
        return pyrage.ssh.Recipient.from_str(recipient)
    except pyrage.RecipientError as exc:
        raise ConfigurationError(f"{_shortened(recipient)!r} is not a valid key: {exc}") from exc


def describe(recipient: str) -> str:
    """A recipient as people recognise it: an age key whole, an SSH key by its type and
    fingerprint (as ``ssh-keygen -l`` prints it)."""
    return ssh_keys.fingerprint(recipient) if recipient.startswith("ssh-") else recipient


@dataclass(frozen=True)
class IdentityFile:
    """A file holding private keys, and the recipients they decrypt for."""

    path: Path
    recipients: tuple[str, ...]
    passphrase: bool = False  # an SSH key protected by a passphrase: snapctl cannot use it

    def load(self) -> list[Any]:
        """The pyrage identities in the file."""
        import pyrage

        if self.passphrase:
            raise ConfigurationError(
                f"the SSH key {self.path} is protected by a passphrase, which snapctl cannot "
                "ask for; use an age identity (snapctl keygen) or a key without one"
            )
        text = _read_key_file(self.path)
        try:
            if _is_ssh_private(text):
                return [pyrage.ssh.Identity.from_buffer(text.encode())]
            return [pyrage.x25519.Identity.from_str(key) for key in _AGE_SECRET.findall(text)]
        except pyrage.IdentityError as exc:
            raise ConfigurationError(f"the identity file {self.path} is unusable: {exc}") from exc


def default_identity_path() -> Path:
    """Where ``snapctl keygen`` writes, and restore looks first: the user's config dir."""
    import platformdirs

    return platformdirs.user_config_path("snapctl") / "identity.txt"


def identity_files(explicit: Sequence[Path]) -> list[IdentityFile]:
    """The identity files to try: ``--identity`` ones, else ``SNAPCTL_IDENTITY``, else
    the default identity file and the user's SSH keys that exist. One named explicitly that
    cannot be read is an error; a default one missing is not."""
    chosen = list(explicit)
    if not chosen and os.environ.get(ENVIRONMENT_VARIABLE):
        chosen = [Path(os.environ[ENVIRONMENT_VARIABLE])]
    if chosen:
        return [_identity_file(path.expanduser(), required=True) for path in chosen]
    ssh = Path.home() / ".ssh"
    defaults = [default_identity_path(), ssh / "id_ed25519", ssh / "id_rsa"]
    found = (_identity_file(path, required=False) for path in defaults)
    return [identity for identity in found if identity.recipients]


def _identity_file(path: Path, *, required: bool) -> IdentityFile:
    try:
        text = _read_key_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        if not required:
            return IdentityFile(path, ())
        raise ConfigurationError(
            f"cannot read the identity file {path} ({_reason(exc)}); pass --identity FILE or "
            f"set {ENVIRONMENT_VARIABLE} to a readable one"
        ) from exc
    if _is_ssh_private(text):
        public, passphrase = ssh_keys.public_key_of(path, text, _read_key_file)
        return IdentityFile(path, (public,) if public else (), passphrase)
    secrets = _AGE_SECRET.findall(text)
    if required and not secrets:
        raise ConfigurationError(
            f"the identity file {path} holds no age identity (AGE-SECRET-KEY-1...) and no SSH "
            "private key"
        )
    return IdentityFile(path, tuple(_age_public_key(path, secret) for secret in secrets))


def _age_public_key(path: Path, secret: str) -> str:
    import pyrage

    try:
        return str(pyrage.x25519.Identity.from_str(secret).to_public())
    except pyrage.IdentityError as exc:
        raise ConfigurationError(f"the identity file {path} holds an invalid key: {exc}") from exc


_chosen: list[Path] = []  # --identity, for the rest of the command


def use_identities(paths: Sequence[Path]) -> None:
    """The identity files ``--identity`` names, for the rest of the command."""
    _chosen[:] = paths


def chosen_identities() -> list[Path]:
    """What :func:`use_identities` was given: passed on to a background ``prepare``."""
    return list(_chosen)


def can_decrypt(recipients: Sequence[str]) -> bool:
    """Whether one of the user's identities is among ``recipients`` (none is read)."""
    try:
        files = identity_files(_chosen)
    except ConfigurationError:
        return False
    return any(set(recipients) & set(file.recipients) for file in files)


def identities_for(recipients: Sequence[str], what: str) -> list[Any]:
    """The pyrage identities, among the user's, that ``what`` (a snapshot's artifact) is
    encrypted to; none is a :class:`ConfigurationError` naming the recipients."""
    files = identity_files(_chosen)
    wanted = set(recipients)
    matching = [file for file in files if wanted & set(file.recipients)]
    if not matching:
        tried = ", ".join(str(file.path) for file in files) or "none found"
        raise ConfigurationError(
            f"{what} is encrypted to {', '.join(describe(r) for r in recipients)}; none of "
            f"your identities ({tried}) is one of them: pass --identity FILE or set "
            f"{ENVIRONMENT_VARIABLE}"
        )
    return [identity for file in matching for identity in file.load()]


def new_identity(path: Path) -> str:
    """Write a new age identity to ``path`` (a new private file; never over one already
    there) and return its public key."""
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise ConfigurationError(
            f"{path} exists already; give another file with --output, or use the one there"
        ) from None
    with open(fd, "w", encoding="ascii") as handle:
        handle.write(f"# public key: {public}\n{identity}\n")
    return public


def _read_key_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return handle.read(_MAX_KEY_FILE).decode("utf-8")


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


def _shortened(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."
