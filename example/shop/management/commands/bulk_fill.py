"""Fill the shop fast with many rows, for benchmarks: raw batched inserts in one transaction.

``--rows N`` customers (JSON preferences, long notes), N orders, 2N order lines, N/10 products
(binary images, tags through the many-to-many table). Deterministic for a given --seed.
"""

import json
import random
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, transaction

BATCH = 5000
EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)
TABLES = [
    "shop_customer",
    "shop_tag",
    "shop_product",
    "shop_product_tags",
    "shop_order",
    "shop_orderline",
]


def batches(rows: Iterator[Sequence[Any]]) -> Iterator[list[Sequence[Any]]]:
    batch: list[Sequence[Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class Command(BaseCommand):
    help = "Insert many rows quickly (benchmarks)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rows", type=int, default=200_000)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, rows: int, seed: int, database: str, **options: Any) -> None:
        rng = random.Random(seed)
        connection = connections[database]
        is_postgres = connection.vendor == "postgresql"
        products = rows // 10
        words = ["alpha", "beta", "gamma", "délta", "ε", "数据", "🚀", "lorem", "ipsum"]
        with connection.cursor() as cursor:
            # New ids follow whatever the tables hold already, so filling twice works.
            start = {}
            for table in TABLES:
                cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
                start[table] = int(cursor.fetchone()[0])
        customer0, product0, order0, tag0 = (
            start["shop_customer"],
            start["shop_product"],
            start["shop_order"],
            start["shop_tag"],
        )

        def when(i: int) -> datetime:
            value = EPOCH + timedelta(seconds=i * 37, microseconds=i % 999_983)
            aware = is_postgres or connection.vendor == "sqlite"
            return value if aware else value.replace(tzinfo=None)

        def ids(table: str, count: int) -> range:
            return range(start[table] + 1, start[table] + count + 1)

        def customers() -> Iterator[Sequence[Any]]:
            for i in ids("shop_customer", rows):
                prefs = {"n": i, "tags": rng.sample(words, 3), "score": rng.random()}
                notes = " ".join(rng.choices(words, k=60))
                name = f"Customer {i} {words[i % 9]}"
                yield (i, name, f"bulk{i}@example.com", when(i), json.dumps(prefs), notes)

        def product_rows() -> Iterator[Sequence[Any]]:
            for i in ids("shop_product", products):
                image = rng.randbytes(rng.randint(1024, 4096))
                price = f"{rng.randint(1, 10**6)}.{i % 10000:04d}"
                yield (i, f"BULK-{i:08d}", f"Product {i}", price, image, when(i), None, f"{i:032x}")

        def orders() -> Iterator[Sequence[Any]]:
            for i in ids("shop_order", rows):
                customer = customer0 + rng.randint(1, rows)
                yield (i, customer, when(i), f"{rng.randint(1, 10**6)}.{i % 100:02d}")

        def lines() -> Iterator[Sequence[Any]]:
            for k, i in enumerate(ids("shop_orderline", 2 * rows if products else 0)):
                order = order0 + k // 2 + 1
                yield (i, order, product0 + rng.randint(1, products), rng.randint(1, 9))

        def tags() -> Iterator[Sequence[Any]]:
            for i in ids("shop_tag", 8 if products else 0):
                yield (i, f"bulk-tag-{i}")

        def product_tags() -> Iterator[Sequence[Any]]:
            link = iter(ids("shop_product_tags", 3 * products))
            for product in range(product0 + 1, product0 + products + 1):
                for tag in rng.sample(range(tag0 + 1, tag0 + 9), 3):
                    yield (next(link), product, tag)

        tables = [
            ("shop_customer", "id, name, email, joined, preferences, notes", customers()),
            ("shop_tag", "id, name", tags()),
            (
                "shop_product",
                "id, sku, title, price, image, created, available, uuid",
                product_rows(),
            ),
            ("shop_product_tags", "id, product_id, tag_id", product_tags()),
            ("shop_order", "id, customer_id, placed, total", orders()),
            ("shop_orderline", "id, order_id, product_id, quantity", lines()),
        ]
        total = 0
        with transaction.atomic(using=database), connection.cursor() as cursor:
            for table, columns, generator in tables:
                marks = ", ".join(["%s"] * len(columns.split(",")))
                sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
                for batch in batches(generator):
                    cursor.executemany(sql, batch)
                    total += len(batch)
            if is_postgres:
                for table, _, _ in tables:
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT MAX(id) FROM {table}))"
                    )
        self.stdout.write(f"Inserted {total} rows ({rows} customers and orders)")
