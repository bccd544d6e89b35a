"""The private option file that the client programs (``--defaults-extra-file``) and the driver
(``read_default_file``) read, written from the DATABASES settings: the password goes there,
never onto a command line or into the environment. See docs/mysql.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snapctl.errors import ConfigurationError

# Connection charsets that are subsets of utf8mb4: reading through them could lose characters.
_UTF8_SUBSETS = {"utf8", "utf8mb3"}
_SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")


def _option_value(value: object) -> str:
    """A value for an option file: quoted so ``#``, quotes and spaces stay part of it."""
    text = str(value)
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = text.replace(raw, escaped)
    return f'"{text}"'


def _include_line(path: object) -> str:
    text = str(Path(str(path)).expanduser())
    if "\n" in text or "\r" in text:
        raise ConfigurationError("OPTIONS['read_default_file'] must be a plain file path")
    if not Path(text).is_file():
        raise ConfigurationError(f"OPTIONS['read_default_file'] {text} does not exist")
    return f"!include {text}"


def _client_options(settings: dict[str, Any]) -> dict[str, object]:
    """The [client] options for DATABASES settings, empty ones left out so files win."""
    options = settings.get("OPTIONS") or {}
    host = str(settings.get("HOST") or "")
    charset = str(options.get("charset") or "utf8mb4")
    values: dict[str, object] = {
        "user": settings.get("USER"),
        "password": settings.get("PASSWORD"),
        "socket": host if host.startswith("/") else options.get("unix_socket"),
        "host": None if host.startswith("/") else host,
        "port": settings.get("PORT"),
        "default-character-set": "utf8mb4" if charset in _UTF8_SUBSETS else charset,
    }
    ssl = options.get("ssl") or {}
    if not isinstance(ssl, dict):
        raise ConfigurationError("OPTIONS['ssl'] must be a dict with ca, cert, key")
    for key in ("ca", "cert", "key", "capath", "cipher"):
        values[f"ssl-{key}"] = ssl.get(key)
    if options.get("ssl_mode"):
        values["loose-ssl-mode"] = options["ssl_mode"]  # MySQL only; MariaDB skips loose-*
    return {key: value for key, value in values.items() if value not in (None, "")}


def option_file_text(settings: dict[str, Any]) -> str:
    """The whole option file: the project's own file first, then the settings over it."""
    lines = []
    read_default_file = (settings.get("OPTIONS") or {}).get("read_default_file")
    if read_default_file:
        lines.append(_include_line(read_default_file))
    lines.append("[client]")
    for key, value in _client_options(settings).items():
        lines.append(f"{key}={_option_value(value)}")
    return "\n".join(lines) + "\n"


def ssl_mode(settings: dict[str, Any]) -> str | None:
    value = (settings.get("OPTIONS") or {}).get("ssl_mode")
    if not value:
        return None
    mode = str(value).upper()
    if mode not in _SSL_MODES:
        raise ConfigurationError(
            f"OPTIONS['ssl_mode'] {value!r} is not one of {', '.join(_SSL_MODES)}"
        )
    return mode
