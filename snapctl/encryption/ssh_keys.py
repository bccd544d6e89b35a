"""What snapctl reads of SSH keys without a library for them: the public key an OpenSSH
private key file carries in its unencrypted header (so a passphrase-protected key is still
recognised as a recipient's), a public key's type and its fingerprint. Decryption itself is
pyrage's."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Callable
from pathlib import Path

SSH_RECIPIENT = re.compile(r"(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/]+={0,2}")
_OPENSSH_PRIVATE = re.compile(
    r"-----BEGIN OPENSSH PRIVATE KEY-----(.*?)-----END OPENSSH PRIVATE KEY-----", re.S
)


def is_public_key(text: str) -> bool:
    """Whether ``text`` is ``TYPE BASE64`` whose base64 holds a key of that type."""
    if not SSH_RECIPIENT.fullmatch(text):
        return False
    kind, _, encoded = text.partition(" ")
    try:
        named, _ = _ssh_string(base64.b64decode(encoded, validate=True), 0)
    except (binascii.Error, struct.error, ValueError):
        return False
    return named == kind.encode()


def fingerprint(recipient: str) -> str:
    """``TYPE SHA256:...``, as ``ssh-keygen -l`` names a key."""
    kind, _, encoded = recipient.partition(" ")
    digest = hashlib.sha256(base64.b64decode(encoded)).digest()
    return f"{kind} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


def public_key_of(path: Path, text: str, read: Callable[[Path], str]) -> tuple[str | None, bool]:
    """The public key of an SSH private key, and whether a passphrase protects it: read from
    the OpenSSH key's unencrypted header (which holds the public key even when the private
    part is encrypted), else from the ``.pub`` file beside it."""
    found = _OPENSSH_PRIVATE.search(text)
    if found:
        try:
            return _openssh_header(base64.b64decode("".join(found.group(1).split())))
        except (binascii.Error, struct.error, ValueError, UnicodeDecodeError):
            pass
    try:
        parts = read(path.with_name(path.name + ".pub")).split()
    except (OSError, UnicodeDecodeError):
        return None, False
    public = " ".join(parts[:2])
    return (public if SSH_RECIPIENT.fullmatch(public) else None), "ENCRYPTED" in text


def _openssh_header(blob: bytes) -> tuple[str | None, bool]:
    """The public key and whether it is encrypted, from an ``openssh-key-v1`` blob: the
    magic, then the cipher's, the KDF's and its options' strings, the key count and the
    first public key."""
    magic = b"openssh-key-v1\x00"
    if not blob.startswith(magic):
        raise ValueError("not an OpenSSH private key")
    offset = len(magic)
    fields = []
    for _ in range(3):
        value, offset = _ssh_string(blob, offset)
        fields.append(value)
    (count,) = struct.unpack_from(">I", blob, offset)
    if count < 1:
        raise ValueError("no key")
    public, _ = _ssh_string(blob, offset + 4)
    kind, _ = _ssh_string(public, 0)
    recipient = f"{kind.decode('ascii')} {base64.b64encode(public).decode('ascii')}"
    return (recipient if SSH_RECIPIENT.fullmatch(recipient) else None), fields[0] != b"none"


def _ssh_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", blob, offset)
    end = offset + 4 + length
    if end > len(blob):
        raise ValueError("truncated")
    return blob[offset + 4 : end], end
