"""QR codes for the panel, drawn on this machine with ``segno`` (never by a web service):
an SVG as a ``data:`` URI an ``<img>`` can show under the panel's CSP
(``img-src 'self' data:``). Error correction M, as for the TOTP codes of
``checkin clinician totp``: readable off a screen, small enough for a phone's camera.
"""

from __future__ import annotations

import base64
import io

import segno

SCALE = 4  # pixels a module: 116 px square for a Telegram link


def qr_svg(text: str) -> bytes:
    """The QR code of `text` as a standalone SVG document."""
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", xmldecl=False, border=2, scale=SCALE)
    return out.getvalue()


def svg_data_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def qr_data_uri(text: str) -> str:
    """`text` (a link, an otpauth URI) as a QR code an ``<img>`` shows."""
    return svg_data_uri(qr_svg(text))
