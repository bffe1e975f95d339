"""Storage: SQLModel tables, the database handle, queries, migrations, the audit chain and
encryption at rest. Imports ``bot.domain``, ``bot.config`` and ``bot.logs`` only; the use
cases in ``bot.app`` are written over it (its repository and query modules are their
storage port), and nothing in it calls up into them.
"""
