"""The user database: engine, tables and migrations."""
