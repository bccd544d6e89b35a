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
from typing import Any

from django.core.serializers import jsonl
from django.core.serializers.json import DjangoJSONEncoder

FORMAT = "snapctl-jsonl"


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
        json.dump(self.get_dump_object(obj), self.stream, **options)
        self.stream.write("\n")
        self._current = None


Deserializer = jsonl.Deserializer
