"""Records and contracts: the event contract (`events`), Debezium change events, the stored
record codec, and the per-partition ingest progress record."""
