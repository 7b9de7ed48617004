"""The web session cookie: sealed with the session key, refused when forged, altered or too old; CSRF tokens bound
to the session."""

from __future__ import annotations

from ledger.settings import Settings
from ledger.web.session import MAX_AGE, csrf_ok, csrf_token, seal, session_key, unseal

KEY = b"k" * 32


def test_a_sealed_session_opens_with_its_key_only():
    value = seal(KEY, "abc123", now=1_000_000)
    session = unseal(KEY, value, now=1_000_100)
    assert session is not None and session.token_id == "abc123" and session.signed_in == 1_000_000
    assert unseal(b"x" * 32, value, now=1_000_100) is None
    body, mac = value.split(".")
    assert unseal(KEY, body[:-2] + "AA." + mac, now=1_000_100) is None
    for broken in (None, "", "nodot", "a.b.c", value + "x"):
        assert unseal(KEY, broken, now=1_000_100) is None


def test_a_session_ends_after_its_maximum_age():
    value = seal(KEY, "abc123", now=1_000_000)
    assert unseal(KEY, value, now=1_000_000 + MAX_AGE) is not None
    assert unseal(KEY, value, now=1_000_000 + MAX_AGE + 1) is None


def test_csrf_tokens_belong_to_one_session():
    one, two = unseal(KEY, seal(KEY, "t")), unseal(KEY, seal(KEY, "t"))
    assert one.nonce != two.nonce
    assert csrf_ok(KEY, one.nonce, csrf_token(KEY, one.nonce))
    assert not csrf_ok(KEY, one.nonce, csrf_token(KEY, two.nonce))
    assert not csrf_ok(KEY, one.nonce, None) and not csrf_ok(KEY, one.nonce, "")


def test_the_session_key_is_made_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("LEDGER_WEB_SECRET", raising=False)
    settings = Settings(database_url=None, home=tmp_path / "home")
    first = session_key(settings)
    assert len(first) == 32 and session_key(settings) == first
    assert (tmp_path / "home" / "web-session.key").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("LEDGER_WEB_SECRET", "configured")
    assert session_key(settings) != first
