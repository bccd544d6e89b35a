"""Sanitized snapshots (``dump --sanitize``): the project's rules rewrite chosen columns with
fakes made from a keyed hash, in a scratch copy of the database (or in the objects dumpdata
writes), so a snapshot never holds the real values.

``rules`` (the grammar, pure), ``fakes`` (the fakes, pure), ``key`` (where the key comes
from), ``binding`` (the rules checked against the models), ``applying`` (the rules applied),
``scratch_alias`` (a Django alias for a scratch copy), ``planning`` (what a dump sanitizes).
This package imports nothing heavy when imported: the manifest reads ``rules``.
"""
