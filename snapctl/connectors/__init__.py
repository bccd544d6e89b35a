"""Connectors: the contract (api.py), one module or package per engine (sqlite.py, postgres/,
mysql/, dumpdata.py), and what they share for running client programs (_process.py)."""
