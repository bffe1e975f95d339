"""Channel adapters (Telegram, SMS through Twilio, the console): translate between our
rendered messages and the providers' wire formats, and foreign errors into ours. May import
``bot.domain``, ``bot.config``, ``bot.rendering`` and ``bot.app`` (the ports and the
``Inbound`` value); never storage, the CLI or the web entrypoint."""
