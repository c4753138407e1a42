"""Data access: the DuckDB warehouse, model registries, audit trail and export writers."""
