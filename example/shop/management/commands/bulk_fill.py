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
        products = max(1, rows // 10)
        words = ["alpha", "beta", "gamma", "délta", "ε", "数据", "🚀", "lorem", "ipsum"]

        def when(i: int) -> datetime:
            value = EPOCH + timedelta(seconds=i * 37, microseconds=i % 999_983)
            return (
                value
                if is_postgres or connection.vendor == "sqlite"
                else value.replace(tzinfo=None)
            )

        def customers() -> Iterator[Sequence[Any]]:
            for i in range(1, rows + 1):
                prefs = {"n": i, "tags": rng.sample(words, 3), "score": rng.random()}
                notes = " ".join(rng.choices(words, k=60))
                yield (
                    i,
                    f"Customer {i} {words[i % 9]}",
                    f"c{i}@example.com",
                    when(i),
                    json.dumps(prefs),
                    notes,
                )

        def product_rows() -> Iterator[Sequence[Any]]:
            for i in range(1, products + 1):
                image = rng.randbytes(rng.randint(1024, 4096))
                yield (
                    i,
                    f"SKU-{i:08d}",
                    f"Product {i}",
                    f"{rng.randint(1, 10**6)}.{i % 10000:04d}",
                    image,
                    when(i),
                    None,
                    f"{i:032x}",
                )

        def orders() -> Iterator[Sequence[Any]]:
            for i in range(1, rows + 1):
                yield (i, rng.randint(1, rows), when(i), f"{rng.randint(1, 10**6)}.{i % 100:02d}")

        def lines() -> Iterator[Sequence[Any]]:
            for i in range(1, 2 * rows + 1):
                yield (i, (i + 1) // 2, rng.randint(1, products), rng.randint(1, 9))

        def tags() -> Iterator[Sequence[Any]]:
            for i in range(1, 9):
                yield (i, f"tag-{i}")

        def product_tags() -> Iterator[Sequence[Any]]:
            n = 0
            for product in range(1, products + 1):
                for tag in rng.sample(range(1, 9), 3):
                    n += 1
                    yield (n, product, tag)

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
