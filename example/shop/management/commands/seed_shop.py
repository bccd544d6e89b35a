"""Fill the shop with deterministic, deliberately awkward data.

The same ``--seed`` on the same starting database always produces the same rows,
so tests can compare databases. Unique fields are numbered from the current row
counts, so the command can be run repeatedly on a non-empty database.
"""

import random
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, models, transaction

from shop.models import Customer, Order, OrderLine, Product, Tag

BATCH = 1000

NAMES = [
    "Zoë 🚀",
    "李小龍",
    "Ωmega",
    "Ærøskøbing Ådne",
    "Владимир Набоков",
    "محمد الخوارزمي",
    "שלום עליכם",
    "Nguyễn Thị Minh Khai",
    'O\'Brien "Bob"',
    "Back\\slash; DROP TABLE shop_customer;--",
    "Ada Lovelace",
    "  leading and trailing  ",
]
# Distinct even under MySQL's case/accent-insensitive collations (no two emoji).
TAGS = ["new", "sale", "écologique", "日本製", "🔥 hot", "Ελληνικά", "handmade", "b&w"]
TIMEZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "America/St_Johns",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
]
EDGE_PRICES = ["0.0000", "0.0001", "-0.0001", "99999999.9999", "-99999999.9999", "1234.5678"]
NOTES = ["", "line one\nline two\r\nline three", "tab\tseparated", "quote ' and \" and `", "🧾"]

T = TypeVar("T", bound=models.Model)


def aware_datetime(rng: random.Random) -> datetime:
    """A random instant between 1950 and 2060 with microseconds, in a random zone."""
    start = datetime(1950, 1, 1, tzinfo=timezone.utc)
    seconds = rng.randrange(110 * 365 * 86400)
    moment = start + timedelta(seconds=seconds, microseconds=rng.randrange(1_000_000))
    return moment.astimezone(ZoneInfo(rng.choice(TIMEZONES)))


def price(rng: random.Random, index: int) -> Decimal:
    if index < len(EDGE_PRICES):
        return Decimal(EDGE_PRICES[index])
    return Decimal(rng.randint(-(10**12) + 1, 10**12 - 1)).scaleb(-4)


def preferences(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.1:
        return {}
    return {
        "newsletter": rng.choice([True, False]),
        "theme": rng.choice(["dark", "light", None]),
        "score": rng.uniform(-1e6, 1e6),
        "ratio": rng.choice([0.1, 1e-7, 1.5e300, -0.0, 2**53 + 1]),
        "history": [rng.randint(-5, 5), None, "ünïcødé ✓", 3.25, [], {}],
        "address": {
            "city": rng.choice(["Zürich", "東京", "São Paulo", "Paris"]),
            "zip": None,
            "geo": [round(rng.uniform(-90, 90), 6), round(rng.uniform(-180, 180), 6)],
        },
        'key with "quotes" and \\ 🚀': {"nested": {"deeper": [1, [2, [3, None]]]}},
    }


def blob(rng: random.Random, index: int) -> bytes:
    if index == 0:
        return bytes(range(256))
    if index == 1:
        return b""
    data = rng.randbytes(rng.randrange(1, 2048))
    return b"\x00" + data + b"\x00"


def batched(items: list[Any], size: int = BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def create(model: type[T], objs: list[T], using: str) -> list[T]:
    """bulk_create in batches, making sure the primary keys are set afterwards."""
    for chunk in batched(objs):
        model._default_manager.using(using).bulk_create(chunk)
        if chunk and chunk[0].pk is None:  # backend cannot return ids (e.g. MySQL)
            newest = model._default_manager.using(using).order_by("-pk")[: len(chunk)]
            pks = sorted(newest.values_list("pk", flat=True))
            for obj, pk in zip(chunk, pks, strict=True):
                obj.pk = pk
    return objs


class Command(BaseCommand):
    help = "Fill the shop with deterministic test data (unicode, JSON, decimals, blobs...)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customers", type=int, default=50)
        parser.add_argument("--products", type=int, default=30)
        parser.add_argument("--orders", type=int, default=100)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        using: str = options["database"]
        rng = random.Random(options["seed"])
        with transaction.atomic(using=using):
            tags = self.seed_tags(using)
            customers = self.seed_customers(rng, options["customers"], using)
            products = self.seed_products(rng, options["products"], tags, using)
            orders, lines = self.seed_orders(rng, options["orders"], using)
        self.stdout.write(
            f"Seeded {customers} customers, {products} products, {orders} orders, "
            f"{lines} order lines, {len(tags)} tags (seed={options['seed']}, "
            f"database={using!r})"
        )

    def seed_tags(self, using: str) -> list[Tag]:
        existing = set(Tag.objects.using(using).values_list("name", flat=True))
        create(Tag, [Tag(name=name) for name in TAGS if name not in existing], using)
        return list(Tag.objects.using(using).filter(name__in=TAGS).order_by("pk"))

    def seed_customers(self, rng: random.Random, count: int, using: str) -> int:
        offset = Customer.objects.using(using).count()
        customers = [
            Customer(
                name=f"{rng.choice(NAMES)} #{offset + i}",
                email=f"customer{offset + i}@example.com",
                joined=aware_datetime(rng),
                preferences=preferences(rng),
                notes=rng.choice(NOTES),
            )
            for i in range(count)
        ]
        create(Customer, customers, using)
        return count

    def seed_products(self, rng: random.Random, count: int, tags: list[Tag], using: str) -> int:
        offset = Product.objects.using(using).count()
        products = []
        for i in range(count):
            sku = f"SKU-{offset + i:07d}"
            products.append(
                Product(
                    sku=sku,
                    title=f"{rng.choice(NAMES)} — product {offset + i}",
                    price=price(rng, offset + i),
                    image=blob(rng, offset + i),
                    created=aware_datetime(rng),
                    available=None
                    if rng.random() < 0.2
                    else date(1990, 1, 1) + timedelta(days=rng.randrange(50 * 365)),
                    uuid=uuid.uuid5(uuid.NAMESPACE_URL, f"snapctl-example:{sku}"),
                )
            )
        create(Product, products, using)
        links = [
            Product.tags.through(product_id=product.pk, tag_id=tag.pk)
            for product in products
            for tag in rng.sample(tags, k=rng.randint(0, min(4, len(tags))))
        ]
        create(Product.tags.through, links, using)
        return count

    def seed_orders(self, rng: random.Random, count: int, using: str) -> tuple[int, int]:
        if count <= 0:
            return 0, 0
        customer_ids = list(
            Customer.objects.using(using).order_by("pk").values_list("pk", flat=True)
        )
        product_ids = list(Product.objects.using(using).order_by("pk").values_list("pk", flat=True))
        if not customer_ids:
            raise CommandError("Cannot create orders without customers (use --customers N).")
        line_count = 0
        # Work in chunks so that hundreds of thousands of orders fit in memory.
        for start in range(0, count, BATCH):
            orders = [
                Order(
                    customer_id=rng.choice(customer_ids),
                    placed=aware_datetime(rng),
                    total=Decimal(rng.randint(-(10**5), 10**12 - 1)).scaleb(-2),
                )
                for _ in range(min(BATCH, count - start))
            ]
            create(Order, orders, using)
            lines = [
                OrderLine(order_id=order.pk, product_id=product_id, quantity=rng.randint(1, 500))
                for order in orders
                for product_id in rng.sample(
                    product_ids, k=min(rng.randint(1, 5), len(product_ids))
                )
            ]
            create(OrderLine, lines, using)
            line_count += len(lines)
        return count, line_count
