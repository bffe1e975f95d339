"""CPU per Telegram request in the channel: sendMessage + editMessageText pairs.

A patient's turn makes two requests (the answered question's edit, then the next
question). This sends ``--pairs`` such pairs, one after another, through
`TelegramChannel.send` to the Bot API stand-in in a process of its own (so only the
channel's work is counted), and prints the bench process's CPU time per request
(``time.process_time``), ``--runs`` times.

    .venv/bin/python -m bench.telegram_sends [--pairs 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bot.channels.telegram import TelegramChannel
from bot.rendering.renderer import Button, Rendered
from tests.standins.telegram_served import Options, in_process

CHAT = 5501
OPTIONS = ("Not at all", "Several days", "More than half the days", "Nearly every day")
QUESTION = Rendered(
    "<b>3/9</b> (last 2 weeks)\nTrouble falling or staying asleep, or sleeping too much?",
    buttons=tuple(Button(label, f"phq9.q3={n}") for n, label in enumerate(OPTIONS)),
    html=True,
)
ANSWERED = Rendered(f"{QUESTION.text}\n\n✓ Several days", html=True)


async def run(pairs: int) -> float:
    """CPU seconds per request over `pairs` send + edit pairs."""
    async with in_process(Options()) as stand_in:
        channel = TelegramChannel(stand_in.token, f"{stand_in.url}/bot")
        try:
            await channel.send(str(CHAT), QUESTION, {})  # warm up: getMe, connection
            started = time.process_time()
            for _ in range(pairs):
                sent = await channel.send(str(CHAT), QUESTION, {})
                edit: dict[str, object] = {"edit": True, "edit_message_id": sent}
                await channel.send(str(CHAT), ANSWERED, edit)
            return (time.process_time() - started) / (2 * pairs)
        finally:
            await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for n in range(args.runs):
        per_request = asyncio.run(run(args.pairs))
        print(f"run {n + 1}: {per_request * 1e3:.3f} ms CPU per request ({args.pairs} pairs)")


if __name__ == "__main__":
    main()
