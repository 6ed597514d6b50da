"""The SQL store: schema, named queries and write batching."""
