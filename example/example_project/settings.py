"""Settings for the snapctl example project.

The database is selected through environment variables so that tests can point
the same project at any server:

- EXAMPLE_DB_ENGINE: ``sqlite`` (default), ``postgresql`` or ``mysql``
- EXAMPLE_DB_NAME: database name; for sqlite a file path (default ``<example>/db.sqlite3``),
  for servers default ``example``
- EXAMPLE_DB_USER, EXAMPLE_DB_PASSWORD, EXAMPLE_DB_HOST, EXAMPLE_DB_PORT
- EXAMPLE_DB2_NAME: if set, adds a second sqlite alias ``other`` at that path
- EXAMPLE_SNAPSHOTS_DIR: if set, ``SNAPSHOTS["DIRECTORY"]``
- EXAMPLE_ENCRYPT_TO: if set, ``SNAPSHOTS["ENCRYPT_TO"]`` (public keys or files, comma-separated)
- EXAMPLE_SQLITE_FORMAT: ``backup`` or ``sql``, the SQLite connector's format
- EXAMPLE_SANITIZE: ``SNAPSHOTS["SANITIZE"]`` as JSON; EXAMPLE_SANITIZE_BY_DEFAULT: aliases
  (comma-separated) for ``SNAPSHOTS["SANITIZE_BY_DEFAULT"]``
- EXAMPLE_PG_IN_PLACE_BELOW: the PostgreSQL connector's ``in_place_below`` (0: always swap)
- EXAMPLE_S3_BUCKET (with EXAMPLE_S3_ENDPOINT, EXAMPLE_S3_ACCESS_KEY, EXAMPLE_S3_SECRET_KEY):
  keep snapshots in that S3 bucket, through django-storages
- EXAMPLE_DBBACKUP_DIR: if set, django-dbbackup is installed with its backups there (the
  benchmark compares snapctl with it)
- EXAMPLE_SNAPSHOTS_APP_DIR: if set, django-snapshots is installed with its snapshots there
  (the benchmark compares snapctl with it); its SNAPSHOTS setting replaces snapctl's
"""

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "snapctl-example-not-a-secret"
DEBUG = False
ALLOWED_HOSTS: list[str] = ["*"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "shop",
]

ROOT_URLCONF = "example_project.urls"

USE_TZ = True
TIME_ZONE = "Europe/Paris"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_ENGINES = {
    "sqlite": "django.db.backends.sqlite3",
    "postgresql": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
}
_engine = os.environ.get("EXAMPLE_DB_ENGINE", "sqlite")
if _engine not in _ENGINES:
    raise ValueError(f"EXAMPLE_DB_ENGINE must be one of {sorted(_ENGINES)}, not {_engine!r}")

_default: dict[str, Any] = {
    "ENGINE": _ENGINES[_engine],
    "NAME": os.environ.get("EXAMPLE_DB_NAME")
    or (str(BASE_DIR / "db.sqlite3") if _engine == "sqlite" else "example"),
    "USER": os.environ.get("EXAMPLE_DB_USER", ""),
    "PASSWORD": os.environ.get("EXAMPLE_DB_PASSWORD", ""),
    "HOST": os.environ.get("EXAMPLE_DB_HOST", ""),
    "PORT": os.environ.get("EXAMPLE_DB_PORT", ""),
}
if _engine == "mysql":
    _default["OPTIONS"] = {"charset": "utf8mb4"}

DATABASES: dict[str, dict[str, Any]] = {"default": _default}
if os.environ.get("EXAMPLE_DB2_NAME"):
    DATABASES["other"] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["EXAMPLE_DB2_NAME"],
    }

SNAPSHOTS: dict[str, Any] = {}
if os.environ.get("EXAMPLE_SNAPSHOTS_DIR"):
    SNAPSHOTS["DIRECTORY"] = os.environ["EXAMPLE_SNAPSHOTS_DIR"]
if os.environ.get("EXAMPLE_ENCRYPT_TO"):
    SNAPSHOTS["ENCRYPT_TO"] = os.environ["EXAMPLE_ENCRYPT_TO"].split(",")
if os.environ.get("EXAMPLE_SANITIZE"):
    # Sanitized snapshots: the rules as JSON (README, "Sanitized snapshots").
    import json

    SNAPSHOTS["SANITIZE"] = json.loads(os.environ["EXAMPLE_SANITIZE"])
if os.environ.get("EXAMPLE_SANITIZE_BY_DEFAULT"):
    SNAPSHOTS["SANITIZE_BY_DEFAULT"] = os.environ["EXAMPLE_SANITIZE_BY_DEFAULT"].split(",")
if os.environ.get("EXAMPLE_SQLITE_FORMAT"):
    # The reference API's way to configure a connector: an instance in settings.
    from snapctl import SQLiteConnector

    SNAPSHOTS["DATABASE_CONNECTORS"] = {
        "default": SQLiteConnector(format=os.environ["EXAMPLE_SQLITE_FORMAT"])
    }
if os.environ.get("EXAMPLE_PG_IN_PLACE_BELOW"):
    # The PostgreSQL connector's size below which it restores in place (0: always swap).
    from snapctl import PostgresConnector

    SNAPSHOTS["DATABASE_CONNECTORS"] = {
        "default": PostgresConnector(in_place_below=int(os.environ["EXAMPLE_PG_IN_PLACE_BELOW"]))
    }

if os.environ.get("EXAMPLE_PG_KEEP_FREE"):
    # The share of the server's disk a prepared copy must leave free (default 0.05).
    from snapctl import PostgresConnector

    SNAPSHOTS["DATABASE_CONNECTORS"] = {
        "default": PostgresConnector(keep_free=float(os.environ["EXAMPLE_PG_KEEP_FREE"]))
    }

if os.environ.get("EXAMPLE_S3_BUCKET"):
    # Snapshots in S3: an entry of Django's STORAGES, named in SNAPSHOTS["STORAGE"].
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "snapshots": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": os.environ["EXAMPLE_S3_BUCKET"],
                "endpoint_url": os.environ.get("EXAMPLE_S3_ENDPOINT") or None,
                "access_key": os.environ.get("EXAMPLE_S3_ACCESS_KEY"),
                "secret_key": os.environ.get("EXAMPLE_S3_SECRET_KEY"),
                "region_name": "us-east-1",
                "file_overwrite": True,
            },
        },
    }
    SNAPSHOTS["STORAGE"] = "snapshots"

if os.environ.get("EXAMPLE_DBBACKUP_DIR"):
    # For the benchmark's comparison with django-dbbackup (pip install django-dbbackup).
    INSTALLED_APPS.append("dbbackup")
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "dbbackup": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": os.environ["EXAMPLE_DBBACKUP_DIR"]},
        },
    }

if os.environ.get("EXAMPLE_SNAPSHOTS_APP_DIR"):
    # For the benchmark's comparison with django-snapshots (pip install django-snapshots).
    # It reads the same SNAPSHOTS setting as snapctl, so snapctl is not run with this set.
    # Its one always-empty table is not migrated: every tool dumps the same tables.
    INSTALLED_APPS += ["django_snapshots", "django_snapshots.backup", "django_snapshots.restore"]
    SNAPSHOTS = {
        "STORAGE": {
            "BACKEND": "django_snapshots.storage.local.LocalFileSystemBackend",
            "OPTIONS": {"location": os.environ["EXAMPLE_SNAPSHOTS_APP_DIR"]},
        },
    }
