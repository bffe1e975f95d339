"""The loop that makes time pass: due check-ins, expiry, recovery, outbox delivery."""
