"""Sanitizing's pure parts, in process and without Django: the rules' grammar and its errors,
the key, and the fakes (deterministic, keyed, within max_length, distinct)."""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    EXIT_INTEGRITY,
    EXIT_OK,
    assert_one_line,
    craft_snapshot,
    new_store,
    run_on_store,
)

from snapctl.errors import ConfigurationError
from snapctl.sanitizing import fakes
from snapctl.sanitizing.fakes import EMAIL_DOMAIN, Faker
from snapctl.sanitizing.key import DERIVATION_LABEL, sanitize_key
from snapctl.sanitizing.rules import KINDS, Rule, parse_rule, parse_rules, rules_json

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def rule(spec: Any, target: str = "shop.Customer.email") -> Rule:
    return parse_rule(target, spec)


# --- the grammar -----------------------------------------------------------------------------


def test_every_kind_and_form_parses_and_is_recorded_as_written() -> None:
    raw: dict[str, Any] = {f"app.Model.f{i}": kind for i, kind in enumerate(KINDS)}
    raw |= {
        "app.Model.constant": {"value": "redacted"},
        "app.Model.number": {"value": 0},
        "app.Model.ref": {"format": "C-{hash:10}-{number:4} {first_name} {last_name} {{x}}"},
        "app.Model.iban": {"callable": "myproject.fakes.iban"},
    }
    rules = parse_rules(raw)
    assert rules_json(rules) == dict(sorted(raw.items()))
    assert rules["app.Model.constant"].same_for_every_row
    assert not rules["app.Model.ref"].same_for_every_row


@pytest.mark.parametrize(
    ("target", "spec", "words"),
    [
        ("shop.Customer", "email", ["'shop.Customer'", "app_label.Model.field"]),
        ("shop.Customer.email.x", "email", ["app_label.Model.field"]),
        ("shop.Customer.email", "emial", ["unknown kind 'emial'", "email"]),
        ("shop.Customer.email", 5, ["a kind (a string) or a dict"]),
        ("shop.Customer.email", {"value": 1, "format": "x"}, ["one key"]),
        ("shop.Customer.email", {"constant": 1}, ["'value', 'format' or 'callable'"]),
        ("shop.Customer.email", {"value": None}, ["kind 'null'"]),
        ("shop.Customer.email", {"value": [1]}, ["string, number or boolean"]),
        ("shop.Customer.email", {"format": 5}, ["a format is a string"]),
        ("shop.Customer.email", {"format": "C-{hash:10"}, ["bad format", "braces"]),
        ("shop.Customer.email", {"format": "C-{pk}"}, ["unknown placeholder {pk}"]),
        ("shop.Customer.email", {"format": "{hash!r}"}, ["unknown placeholder {hash!r}"]),
        ("shop.Customer.email", {"format": "{hash:0}"}, ["width N from 1 to 64"]),
        ("shop.Customer.email", {"format": "{hash:65}"}, ["width N from 1 to 64"]),
        ("shop.Customer.email", {"format": "{number:x}"}, ["width N from 1 to 30"]),
        ("shop.Customer.email", {"format": "{first_name:3}"}, ["takes no width"]),
        ("shop.Customer.email", {"callable": "iban"}, ["dotted path"]),
        ("shop.Customer.email", {"callable": "os.system; rm"}, ["dotted path"]),
    ],
)
def test_a_bad_rule_is_one_line_naming_it(target: str, spec: Any, words: list[str]) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_rules({target: spec})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"SNAPSHOTS['SANITIZE'] rule '{target}': ")
    for word in words:
        assert word in message, message


def test_rules_must_be_a_dict() -> None:
    with pytest.raises(ConfigurationError, match="must be a dict"):
        parse_rules(["shop.Customer.email"])


# --- the key ---------------------------------------------------------------------------------


def test_the_key_comes_from_the_environment_then_the_setting_then_secret_key() -> None:
    env = {"SNAPCTL_SANITIZE_KEY": "from-env"}
    setting = {"SANITIZE_KEY": "from-setting"}
    assert sanitize_key(setting, "secret", env) == b"from-env"
    assert sanitize_key(setting, "secret", {}) == b"from-setting"
    derived = sanitize_key({}, "secret", {})
    assert derived == hmac.digest(b"secret", DERIVATION_LABEL, "sha256")
    assert b"secret" not in derived
    assert sanitize_key({}, "another secret", {}) != derived


@pytest.mark.parametrize(
    ("snapshots", "secret", "words"),
    [
        ({}, "", ["needs a key", "SNAPCTL_SANITIZE_KEY"]),
        ({"SANITIZE_KEY": ""}, "secret", ["SANITIZE_KEY", "non-empty"]),
        ({"SANITIZE_KEY": 5}, "secret", ["SANITIZE_KEY", "non-empty"]),
    ],
)
def test_no_usable_key_is_a_configuration_error(
    snapshots: dict[str, Any], secret: str, words: list[str]
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        sanitize_key(snapshots, secret, {})
    for word in words:
        assert word in str(raised.value)


# --- the fakes -------------------------------------------------------------------------------

GENERATED = ["email", "username", "phone", "name", "first_name", "last_name", "text"]


@pytest.mark.parametrize("kind", [*GENERATED, "unusable_password"])
def test_fakes_are_deterministic_across_fields_and_depend_on_the_key(kind: str) -> None:
    values = [f"value number {i} of many" for i in range(50)]
    one, again, other = Faker(KEY), Faker(KEY), Faker(OTHER_KEY)
    here, there = rule(kind, "a.B.c"), rule(kind, "d.E.f")
    first = [one.fake(here, value) for value in values]
    assert first == [again.fake(there, value) for value in values]  # another table, run
    changed = [other.fake(here, value) for value in values]
    assert sum(a != b for a, b in zip(first, changed, strict=True)) >= 40
    assert not set(values) & set(first)


@pytest.mark.parametrize("spec", [{"format": "C-{hash:10}"}, {"callable": "x.y"}])
def test_formats_and_callables_take_the_keyed_digest(spec: dict[str, str]) -> None:
    seen: list[tuple[Any, bytes]] = []

    def function(value: Any, digest: bytes) -> str:
        seen.append((value, digest))
        return "f-" + digest.hex()[:6]

    made = Faker(KEY).fake(rule(spec), "a@b.c", function=function)
    digest = hmac.digest(KEY, b"a@b.c", "sha256")
    assert made == ("C-" + digest.hex()[:10] if "format" in spec else "f-" + digest.hex()[:6])


def test_null_and_empty_values_stay_as_they_are() -> None:
    faker = Faker(KEY)
    for kind in KINDS:
        assert faker.fake(rule(kind), None) is None
        assert faker.fake(rule(kind), "") == ""


def test_fixed_kinds_and_constants() -> None:
    faker = Faker(KEY)
    assert faker.fake(rule("null"), "x") is None
    assert faker.fake(rule("empty"), "x") == ""
    assert faker.fake(rule("redact"), "x") == "[redacted]"
    assert faker.fake(rule({"value": 7}), "x") == 7
    password = faker.fake(rule("unusable_password"), "pbkdf2_sha256$1$salt$hash")
    assert password.startswith("!") and len(password) == 41  # Django's unusable form


@pytest.mark.parametrize("kind", GENERATED)
@pytest.mark.parametrize("max_length", [30, 31, 40, 254])
def test_fakes_keep_max_length(kind: str, max_length: int) -> None:
    faker = Faker(KEY)
    for i in range(300):
        value = f"someone.with.a.long.name.{i}@example.com" * 3
        made = faker.fake(rule(kind), value, max_length)
        assert 0 < len(made) <= max_length
        if kind == "email":
            assert made.endswith("@" + EMAIL_DOMAIN)
    assert len(faker.fake(rule({"format": "{hash:64}"}), "v", 12)) == 12


def test_text_is_about_as_long_as_the_value() -> None:
    faker = Faker(KEY)
    for length in (1, 5, 80, 5000):
        made = faker.fake(rule("text"), "x" * length)
        assert len(made) in range(max(1, length - 12), length + 1)
        assert set(made) <= set("abcdefghijklmnopqrstuvwxyz ")


@pytest.mark.parametrize(
    ("spec", "max_length"),
    [
        ("email", 254),
        ("email", fakes.EMAIL_MIN_LENGTH),
        ("username", 150),
        ("username", fakes.USERNAME_MIN_LENGTH),
        ("phone", 32),
        ({"format": "C-{hash:16}"}, None),
    ],
)
def test_distinct_values_get_distinct_fakes(spec: Any, max_length: int | None) -> None:
    faker = Faker(KEY)
    the_rule = rule(spec)
    made = {faker.fake(the_rule, f"customer{i}@example.com", max_length) for i in range(200_000)}
    assert len(made) == 200_000


# --- the manifest's record -------------------------------------------------------------------


def _with_sanitized(store: Path, sanitized: Any) -> str:
    name = craft_snapshot(store)
    manifest_path = store / name / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["databases"]["default"]["sanitized"] = sanitized
    manifest_path.write_text(json.dumps(manifest))
    return name


def test_show_and_list_say_a_snapshot_is_sanitized(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    rules = {"auth.User.email": "email", "shop.Customer.ref": {"format": "C-{hash:10}"}}
    name = _with_sanitized(store, {"rules": rules})

    shown = run_on_store(store, "show", name)
    assert shown.returncode == EXIT_OK, shown.stderr
    assert "default: sanitized, rules: auth.User.email=email" in shown.stdout
    assert 'shop.Customer.ref={"format": "C-{hash:10}"}' in shown.stdout
    listed = run_on_store(store, "list")
    assert "default (db.sqlite3) sanitized" in listed.stdout
    (entry,) = json.loads(run_on_store(store, "list", "--json").stdout)
    assert entry["databases"]["default"]["sanitized"] == {"rules": rules}


@pytest.mark.parametrize(
    "sanitized",
    [
        "yes",
        {},
        {"rules": {"auth.User.email": "email"}, "key": "secret"},
        {"rules": ["auth.User.email"]},
        {"rules": {"auth.User.email": "emial"}},
        {"rules": {"auth.User.email": {"callable": "os.system('x')"}}},
        {"rules": {"auth.User.email": {"value": "\x1b]0;owned\x07"}}},
    ],
)
def test_a_malformed_sanitized_record_is_refused(tmp_path: Path, sanitized: Any) -> None:
    store = new_store(tmp_path)
    name = _with_sanitized(store, sanitized)
    assert_one_line(run_on_store(store, "show", name), EXIT_INTEGRITY, "malformed", "sanitized")
