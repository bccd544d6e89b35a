"""A JSON Lines serializer for dumpdata that restores exactly.

Two departures from Django's own jsonl format, both so that a restore gives back the same rows:
- Datetimes and times keep their microseconds; Django's encoder cuts them to milliseconds.
- Many-to-many fields are left out of their objects: the dump lists the auto-created
  through models as objects of their own, so the link rows keep their ids.
Reading needs nothing special: Django's jsonl deserializer parses both.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.core.serializers import jsonl
from django.core.serializers.json import DjangoJSONEncoder

FORMAT = "snapctl-jsonl"
# What each object goes through before it is written (a sanitizer's), for the dump under way.
TRANSFORM: ContextVar[Callable[[dict[str, Any]], dict[str, Any]] | None] = ContextVar(
    "snapctl_jsonl_transform", default=None
)


class ExactJSONEncoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, (datetime.datetime, datetime.time)):
            text = o.isoformat()
            return text[:-6] + "Z" if text.endswith("+00:00") else text
        return super().default(o)


class Serializer(jsonl.Serializer):
    def handle_m2m_field(self, obj: Any, field: Any) -> None:
        """The through model's own objects carry these links."""

    def end_object(self, obj: Any) -> None:
        # Django 4.2 passes its encoder here, later versions through json_kwargs: replace both.
        options = {**self.json_kwargs, "cls": ExactJSONEncoder}
        dumped = self.get_dump_object(obj)
        transform = TRANSFORM.get()
        if transform is not None:
            dumped = transform(dumped)
        json.dump(dumped, self.stream, **options)
        self.stream.write("\n")
        self._current = None


Deserializer = jsonl.Deserializer
