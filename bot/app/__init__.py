"""Use cases: one module each, named for what it does. Each loads what it needs through
``bot.storage``, asks the pure core (``bot.domain``), and saves the outcome together with
the messages it causes (the outbox) in one transaction.

Grouped by what they serve: ``conversations/`` (a patient's check-in, message by
message), ``alerts/``, ``outbox/`` (delivery), ``planning/``, ``operator/`` (what the CLI
and the web panel do for an operator); here, what they share: :mod:`.context`,
:mod:`.services` (the bundle the entrypoints are handed), :mod:`.ports`, and the small
read-only ones (:mod:`.health`, :mod:`.metrics`, :mod:`.trends`).

May import ``bot.domain``, ``bot.config``, ``bot.logs``, ``bot.instruments``,
``bot.storage`` and ``bot.rendering``. Never a concrete channel, the web app, the CLI or the
scheduler: channels reach the use cases through :mod:`bot.app.ports`.
"""
