"""registry.console.logins and login_limits: logins end when idle or old; failed logins are
counted per address and overall, in a sliding window."""

from __future__ import annotations

from meshwarden.registry.console.login_limits import FailedLogins
from meshwarden.registry.console.logins import MAX_AGE_S, Logins
from meshwarden.registry.operators import OPERATOR, VIEWER
from tests.identity_helpers import FakeClock


def test_a_login_lives_while_its_browser_asks_and_ends_when_idle() -> None:
    clock = FakeClock()
    logins = Logins(clock, idle_s=10)
    login = logins.open(OPERATOR, "operator:sha256:ab", "  alice  ")
    assert login.user == "alice" and login.may_act and login.carries(login.csrf_token)
    assert not login.carries("x" * len(login.csrf_token))
    for _ in range(5):
        clock.now += 9
        assert logins.find(login.session_id) is login  # each request keeps it alive
    clock.now += 10.5
    assert logins.find(login.session_id) is None
    assert logins.find(login.session_id) is None and len(logins) == 0  # forgotten


def test_a_login_ends_after_its_maximum_age_however_busy() -> None:
    clock = FakeClock()
    logins = Logins(clock, idle_s=60)
    login = logins.open(VIEWER, "viewer:sha256:cd", "vera")
    assert not login.may_act
    while clock.now - 1_700_000_000.0 < MAX_AGE_S - 30:
        clock.now += 30
        assert logins.find(login.session_id) is login
    clock.now += 60
    assert logins.find(login.session_id) is None


def test_session_ids_and_csrf_tokens_are_distinct_per_login() -> None:
    logins = Logins(FakeClock(), idle_s=60)
    a, b = logins.open(OPERATOR, "x", ""), logins.open(OPERATOR, "x", "")
    assert len({a.session_id, b.session_id, a.csrf_token, b.csrf_token}) == 4
    logins.close(a.session_id)
    assert logins.find(a.session_id) is None and logins.find(b.session_id) is b


def test_failed_logins_are_limited_per_address_then_overall_and_forgiven_in_time() -> None:
    clock = FakeClock()
    limits = FailedLogins(clock, window_s=60, per_address=3, overall=5)
    for _ in range(3):
        assert limits.check("10.0.0.1").allowed
        limits.failed("10.0.0.1")
        clock.now += 1
    refused = limits.check("10.0.0.1")
    assert not refused.allowed and 56 < refused.retry_after_s <= 58
    assert limits.check("10.0.0.2").allowed  # another address is not limited by this one
    limits.failed("10.0.0.2")
    limits.failed("10.0.0.3")
    assert not limits.check("10.0.0.4").allowed  # five failures in the window, from anywhere
    clock.now += 58
    assert limits.check("10.0.0.1").allowed  # the window moved past its failures
