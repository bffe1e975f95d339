"""Outbox delivery: the pump that claims due messages and sends them (:mod:`.delivery`, with
the invariants), one send and its outcome (:mod:`.sending`), the provider's pace
(:mod:`.pacing`), and the provider's delivery receipts (:mod:`.receipts`).

Sends through the :class:`~bot.app.ports.Channel` port only; never a concrete channel.
"""
