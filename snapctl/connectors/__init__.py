"""Connectors: one module per database engine, each knowing how to dump and restore it."""
