"""Channel adapters: translate between our intents and the providers' wire formats."""
