"""The HTTP entrypoint: the Starlette app (:mod:`.app`) with health and metrics, the
Telegram webhook (:mod:`.telegram`) and the Twilio webhooks (:mod:`.sms`). Routes
authenticate, record, hand over to a use case and return.

May import everything below the composition root (``bot.bootstrap`` included); never the
CLI or the scheduler."""
