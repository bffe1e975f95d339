"""Messages to clinicians: an alert notice, or the answer to a clinician's command, queued
in the outbox (rendered in English on the clinician's channel). A notice goes before
routine traffic; an answer is a reply. Both alerting and the clinician desk tell this way.
"""

from __future__ import annotations

import base64
from datetime import datetime

from bot.domain import events as ev
from bot.rendering.renderer import Renderer
from bot.storage import outbox
from bot.storage.repository import Repository
from bot.storage.tables import Clinician, OutboundMessage


async def tell(
    renderer: Renderer,
    repo: Repository,
    clinician: Clinician,
    intent: ev.Intent,
    source: str,
    now: datetime,
    photo: bytes | None = None,
) -> None:
    """Queue a message to a clinician (a `photo`, PNG, goes with it as base64)."""
    assert clinician.id is not None and clinician.address is not None
    rendered = renderer.render(intent, clinician.channel, "en")
    if rendered is None:
        return
    payload: dict[str, object] = {"intent": type(intent).__name__, "html": rendered.html}
    if rendered.buttons:
        payload["buttons"] = [[b.label, b.data] for b in rendered.buttons]
    if photo is not None:
        payload["photo"] = base64.b64encode(photo).decode("ascii")
    await repo.enqueue([
        OutboundMessage(
            channel=clinician.channel,
            recipient_kind="clinician",
            recipient_id=clinician.id,
            address=clinician.address,
            body=rendered.text,
            payload=payload,
            idempotency_key=f"{source}:c{clinician.id}",
            next_attempt_at=now,
            # an alert goes before routine traffic; a command's answer is a reply
            priority=outbox.URGENT if isinstance(intent, ev.AlertNotice) else outbox.REPLY,
        )
    ])  # fmt: skip
