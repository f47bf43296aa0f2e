"""Digest authentication (voicebot.sip.digest) against RFC 7616 §3.9.1 vectors."""

from __future__ import annotations

import re

import pytest

from voicebot.sip.digest import (
    DigestChallenge,
    DigestCredentials,
    choose_challenge,
    digest_response,
    parse_auth_params,
)

RFC7616_MD5 = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5,'
    ' nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",'
    ' opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_SHA256 = RFC7616_MD5.replace("algorithm=MD5", "algorithm=SHA-256")
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("challenge", "expected"),
    [
        (RFC7616_MD5, "8ca523f5e9506fed4657c9700eebdbec"),
        (RFC7616_SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vectors(challenge: str, expected: str) -> None:
    parsed = DigestChallenge.parse(challenge)
    assert parsed.qop == ["auth", "auth-int"]
    response = digest_response(
        parsed,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce=CNONCE,
        nc=1,
    )
    assert response == expected


def test_rfc2617_without_qop() -> None:
    # RFC 2617 §3.5 example, computed without qop (the RFC 2069 form).
    challenge = DigestChallenge.parse(
        'Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"'
    )
    header = DigestCredentials("Mufasa", "Circle Of Life").authorization(
        challenge, "GET", "/dir/index.html"
    )
    assert 'response="670fd8c2df070c60b045671b8b24ff02"' in header
    assert "qop" not in header and "cnonce" not in header


def test_stock_pyvoip_digest_is_md5_without_qop() -> None:
    import inspect

    import pyVoIP.VoIP  # noqa: F401
    from pyVoIP.SIP import SIPClient

    source = inspect.getsource(SIPClient.gen_authorization)
    assert "md5" in source and "qop" not in source and "sha256" not in source


def test_nc_counts_per_nonce_and_restarts_on_a_new_one() -> None:
    creds = DigestCredentials("201", "pw")
    first = DigestChallenge.parse('Digest realm="r", nonce="n1", qop="auth"')
    second = DigestChallenge.parse('Digest realm="r", nonce="n2", qop="auth"')
    ncs = [
        re.search(r"nc=(\w+)", creds.authorization(c, "REGISTER", "sip:pbx")).group(1)  # type: ignore[union-attr]
        for c in (first, first, second)
    ]
    assert ncs == ["00000001", "00000002", "00000001"]


def test_params_with_commas_inside_quotes_and_unquoted_values() -> None:
    params = parse_auth_params('realm="a, b", nonce=abc, qop="auth,auth-int", stale=TRUE')
    assert params == {"realm": "a, b", "nonce": "abc", "qop": "auth,auth-int", "stale": "TRUE"}


def test_sha256_preferred_when_offered() -> None:
    chosen = choose_challenge([RFC7616_MD5, RFC7616_SHA256])
    assert chosen.algorithm == "SHA-256"


def test_md5_sess() -> None:
    challenge = DigestChallenge.parse('Digest realm="r", nonce="n", qop="auth", algorithm=MD5-sess')
    header = DigestCredentials("u", "p").authorization(challenge, "INVITE", "sip:x", cnonce="c")
    assert "algorithm=MD5-SESS" in header and 'cnonce="c"' in header
