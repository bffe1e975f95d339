"""A patient's check-ins, message by message: inbound messages recorded and processed in
order (:mod:`.inbox`), a known patient's replies (:mod:`.replies`), consent and the SMS
invitation (:mod:`.consent`), enrolment codes and strangers (:mod:`.enrollment`,
:mod:`.strangers`), queueing, starting, reminding and expiring check-ins (:mod:`.asking`,
:mod:`.starting`, :mod:`.reminders`), and the shared steps: writing what the conversation
core decided (:mod:`.transitions`), outbox rows (:mod:`.messages`), quiet hours
(:mod:`.quiet_hours`).

Imports as every use case does (``bot.app``'s docstring); alerting is reached through the
:class:`~bot.app.context.Context`.
"""
