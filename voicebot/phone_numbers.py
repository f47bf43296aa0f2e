"""Phone-number settings checked against `phonenumbers`: the default region,
the allow-list that follows from it, and the dial template's fields.

Pure and below `voicebot.settings`, which checks `callbacks.default_region`,
`callbacks.allowed_number_patterns` and `callbacks.dial_template` with
these; voicebot/callbacks/numbers.py applies the rules to a caller's number.
"""

from __future__ import annotations

import phonenumbers

TEMPLATE_FIELDS = ("e164", "national", "raw")


def default_patterns(region: str) -> list[str]:
    """Numbers of the region's own country, by its calling code: the safe
    default, since a callback to a local client never needs another country."""
    code = phonenumbers.country_code_for_region(region.upper())
    if not code:
        raise ValueError(f"{region!r} is not a region phonenumbers knows (e.g. UA, DE, US)")
    return [rf"^\+{code}[0-9]{{4,14}}$"]


def region_known(region: str) -> bool:
    return region.upper() in phonenumbers.SUPPORTED_REGIONS


def check_template(template: str) -> str:
    """Raise ValueError unless `template` only uses {e164} {national} {raw}."""
    try:
        template.format(e164="+1", national="1", raw="1")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"{template!r} uses an unknown field {exc}; expected text with {{e164}},"
            " {national} or {raw}, e.g. 9{national}"
        ) from None
    if not any(f"{{{name}}}" in template for name in TEMPLATE_FIELDS):
        raise ValueError(
            f"{template!r} names no number; expected {{e164}}, {{national}} or {{raw}}"
        )
    return template
