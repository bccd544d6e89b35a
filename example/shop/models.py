"""A tiny shop whose fields cover the types a backup tool must round-trip exactly."""

import uuid

from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=200)
    email = models.EmailField(unique=True)
    joined = models.DateTimeField()
    preferences = models.JSONField(default=dict)
    notes = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=100, unique=True)

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    title = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=12, decimal_places=4)
    image = models.BinaryField()
    tags = models.ManyToManyField(Tag, blank=True, related_name="products")
    created = models.DateTimeField()
    available = models.DateField(null=True)
    uuid = models.UUIDField(unique=True, default=uuid.uuid4)

    def __str__(self) -> str:
        return self.sku


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    placed = models.DateTimeField()
    total = models.DecimalField(max_digits=12, decimal_places=2)
    products = models.ManyToManyField(Product, through="OrderLine", related_name="orders")

    def __str__(self) -> str:
        return f"Order {self.pk}"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    quantity = models.PositiveIntegerField()
