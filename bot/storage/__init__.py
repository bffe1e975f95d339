"""Storage adapter: SQLModel tables, the database handle, migrations and the repository."""
