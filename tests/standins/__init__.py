"""Local HTTP stand-ins for the messaging providers (Telegram Bot API, Twilio) used in tests."""
