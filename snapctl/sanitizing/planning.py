"""What a dump sanitizes: which aliases (``--sanitize``, ``--no-sanitize``, else
``SNAPSHOTS["SANITIZE_BY_DEFAULT"]``), with which rules and key, all checked before any work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from snapctl.errors import ConfigurationError
from snapctl.sanitizing.applying import Sanitizing
from snapctl.sanitizing.binding import bind_rules
from snapctl.sanitizing.fakes import Faker
from snapctl.sanitizing.key import sanitize_key
from snapctl.sanitizing.rules import parse_rules

RULES = "SANITIZE"
BY_DEFAULT = "SANITIZE_BY_DEFAULT"


def aliases_to_sanitize(
    aliases: Sequence[str], requested: bool | None, snapshots: Mapping[str, Any]
) -> list[str]:
    """The aliases of this dump to sanitize: all (``--sanitize``), none (``--no-sanitize``),
    or those ``SANITIZE_BY_DEFAULT`` lists (True: every alias)."""
    if requested is not None:
        return list(aliases) if requested else []
    default = snapshots.get(BY_DEFAULT, ())
    if default is True:
        return list(aliases)
    if default is False or default is None:
        return []
    if isinstance(default, str) or not all(isinstance(alias, str) for alias in default):
        raise ConfigurationError(
            f"SNAPSHOTS['{BY_DEFAULT}'] must be a list of database aliases, or True for all"
        )
    from snapctl.django_env import database_aliases

    unknown = sorted(set(default) - set(database_aliases()))
    if unknown:
        raise ConfigurationError(
            f"SNAPSHOTS['{BY_DEFAULT}'] names {', '.join(unknown)}, not in DATABASES; "
            "list database aliases"
        )
    return [alias for alias in aliases if alias in default]


def _secret_key(settings: Any) -> str:
    from django.core.exceptions import ImproperlyConfigured

    try:
        return str(getattr(settings, "SECRET_KEY", "") or "")
    except ImproperlyConfigured:  # Django refuses an empty one when it is read
        return ""


def sanitizers_for(aliases: Sequence[str], requested: bool | None) -> dict[str, Sanitizing]:
    """A sanitizer per alias to sanitize, the rules checked against the models and the key
    found; empty when nothing is sanitized."""
    from django.conf import settings

    from snapctl.django_env import require_apps, snapshot_settings

    snapshots = snapshot_settings()
    chosen = aliases_to_sanitize(aliases, requested, snapshots)
    if not chosen:
        return {}
    raw = snapshots.get(RULES)
    if not raw:
        raise ConfigurationError(
            f"sanitizing {', '.join(chosen)} needs rules: set SNAPSHOTS['{RULES}'] (README, "
            '"Sanitized snapshots"), or dump with --no-sanitize'
        )
    rules = parse_rules(raw)
    require_apps()
    bound = bind_rules(rules)
    faker = Faker(sanitize_key(snapshots, _secret_key(settings)))
    return {alias: Sanitizing(alias, bound, faker) for alias in chosen}
