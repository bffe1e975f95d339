"""QR codes drawn here, never by a web service: an SVG as a ``data:`` URI for an ``<img>``
(the panel's Content-Security-Policy allows ``img-src data:``)."""

from __future__ import annotations

import segno


def svg_data_uri(text: str) -> str:
    """`text` (a link, an otpauth URI) as a QR code, error correction M, 4 px modules."""
    return str(segno.make(text, error="m").svg_data_uri(scale=4, border=4))
