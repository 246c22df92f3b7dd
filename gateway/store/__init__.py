"""The store: Redis (`redis://`) or an in-process Redis (`memory://`), same scripts."""

from gateway.store.connect import Store, open_store

__all__ = ["Store", "open_store"]
