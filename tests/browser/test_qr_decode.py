"""``decode_qr`` reads back what segno (the panel's own QR maker) drew: an otpauth URI of
the kind enrolment and TOTP set-up show, and a Telegram deep link."""

from __future__ import annotations

import io

import pytest
import segno

from tests.browser.pages import decode_qr


def png_of(text: str, scale: int = 4) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


@pytest.mark.parametrize(
    "text",
    [
        "otpauth://totp/Test%20Clinic:ana%40clinic.example?secret=JBSWY3DPEHPK3PXP&issuer=Test%20Clinic",
        "https://t.me/checkin_test_bot?start=Zq3xY8kLmN0pR",
    ],
)
def test_a_segno_qr_code_decodes_to_its_text(text: str) -> None:
    assert decode_qr(png_of(text)) == text


def test_an_image_without_a_qr_code_is_refused() -> None:
    blank = io.BytesIO()
    segno.make("x").save(blank, kind="png", scale=1, border=0, dark="white")
    with pytest.raises(AssertionError, match="found 0"):
        decode_qr(blank.getvalue())
