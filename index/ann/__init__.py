"""Approximate nearest-neighbour search: the worker's HNSW index (`hnsw`), its snapshots,
metadata filters, vector checks and the merge of per-worker top-k answers."""
