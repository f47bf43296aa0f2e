"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

The signed content is `"{webhook-id}.{webhook-timestamp}.{body}"`, HMAC-SHA256
keyed with the base64-decoded part of `whsec_<base64>`, sent as
`v1,<base64 signature>`. With several secrets (rotation) every signature is
sent, space-separated; receivers accept the request if any one matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret.

    Padding is optional, as in the reference libraries (many dashboards print
    secrets unpadded)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("secrets take the form whsec_<base64>")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("the part after whsec_ is not valid base64") from None
    if not key:
        raise ValueError("secret is empty")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
    digest = hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: list[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(secret, webhook_id, timestamp, body) for secret in secrets)


def signed_headers(
    secrets: list[str], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, webhook_id, timestamp, body),
        "Content-Type": "application/json",
    }
