"""Use cases: one module each, named for what it does. Each loads what it needs through
``bot.storage``, asks the pure core (``bot.domain``), and saves the outcome together with
the messages it causes (the outbox) in one transaction.

May import ``bot.domain``, ``bot.config``, ``bot.logs``, ``bot.instruments``,
``bot.storage`` and ``bot.rendering``. Never a concrete channel, the web app, the CLI or the
scheduler: channels reach the use cases through :mod:`bot.app.ports`.
"""
