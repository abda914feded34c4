"""What a budget caps and over which period, checked the same way by the CLI (before sending),
the registry (before storing) and sidecars (when matching a call).

Periods are calendar periods in UTC: a daily budget's period is "2026-12-06" and ends at the
next 00:00 UTC, a monthly one "2026-12" and ends on the 1st; a total budget has one period,
"", that never ends. The registry's clock decides which period a slice belongs to.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

from meshwarden.names import AGENT_NAME, AGENT_NAME_RULE
from meshwarden.v1 import budgets_pb2

SCOPE_NAMES: Final[dict[int, str]] = {
    budgets_pb2.BUDGET_SCOPE_TEAM: "team",
    budgets_pb2.BUDGET_SCOPE_WORKFLOW: "workflow",
    budgets_pb2.BUDGET_SCOPE_AGENT: "agent",
    budgets_pb2.BUDGET_SCOPE_MODEL: "model",
    budgets_pb2.BUDGET_SCOPE_SESSION: "session",
}
SCOPE_BY_NAME: Final[dict[str, int]] = {name: kind for kind, name in SCOPE_NAMES.items()}
PERIOD_NAMES: Final[dict[int, str]] = {
    budgets_pb2.BUDGET_PERIOD_DAY: "day",
    budgets_pb2.BUDGET_PERIOD_MONTH: "month",
    budgets_pb2.BUDGET_PERIOD_TOTAL: "total",
}
PERIOD_BY_NAME: Final[dict[str, int]] = {name: kind for kind, name in PERIOD_NAMES.items()}
TEAM: Final = budgets_pb2.BUDGET_SCOPE_TEAM
WORKFLOW: Final = budgets_pb2.BUDGET_SCOPE_WORKFLOW
AGENT: Final = budgets_pb2.BUDGET_SCOPE_AGENT
MODEL: Final = budgets_pb2.BUDGET_SCOPE_MODEL
SESSION: Final = budgets_pb2.BUDGET_SCOPE_SESSION
DAY: Final = budgets_pb2.BUDGET_PERIOD_DAY
MONTH: Final = budgets_pb2.BUDGET_PERIOD_MONTH
TOTAL: Final = budgets_pb2.BUDGET_PERIOD_TOTAL

MAX_MICRO_USD: Final = 10**15  # a billion dollars: far beyond any budget, exact in every JSON number
MAX_SUBJECT_CHARS: Final = 128  # session ids, as the sidecar accepts them
_VALUE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}")  # team, workflow, model names
_VALUE_RULE: Final = "1-128 characters of letters, digits and _.:/@-, starting with a letter or digit"
_MICRO: Final = Decimal(1_000_000)


class BudgetError(ValueError):
    """A budget that cannot be kept; the message names the flag and the rule."""


@dataclass(frozen=True, slots=True)
class Period:
    key: str  # "2026-12-06", "2026-12", or "" for total
    ends_at: float | None  # epoch seconds; None for total


def check_scope(scope: int, value: str) -> str:
    """The value of a valid scope; BudgetError naming the flag otherwise."""
    name = SCOPE_NAMES.get(scope)
    if name is None:
        raise BudgetError(f"budget scope {scope} is not one of --{', --'.join(SCOPE_BY_NAME)}")
    if scope == SESSION:
        if value:
            raise BudgetError(f"--session takes no value (it caps every session alike), got {value!r}")
        return ""
    if scope == AGENT and not AGENT_NAME.fullmatch(value):
        raise BudgetError(f"--agent {value!r} must be {AGENT_NAME_RULE}")
    if not _VALUE.fullmatch(value):
        raise BudgetError(f"--{name} {value!r} must be {_VALUE_RULE}")
    return value


def check_period(period: int) -> int:
    if period not in PERIOD_NAMES:
        raise BudgetError(f"--per must be one of {', '.join(PERIOD_BY_NAME)}, got {period}")
    return period


def check_limits(limit_micro_usd: int, soft_limit_micro_usd: int) -> None:
    if not 0 < limit_micro_usd <= MAX_MICRO_USD:
        raise BudgetError(f"--limit-usd must be more than $0 and at most $1,000,000,000, got {usd(limit_micro_usd)}")
    if not 0 <= soft_limit_micro_usd < limit_micro_usd:
        raise BudgetError(
            f"--soft-usd must be below the limit ({usd(limit_micro_usd)}), got {usd(soft_limit_micro_usd)}"
        )


def describe(scope: int, value: str) -> str:
    """'team finance', 'any one session'."""
    if scope == SESSION:
        return "any one session"
    return f"{SCOPE_NAMES.get(scope, '?')} {value}"


def period_of(period: int, now: float) -> Period:
    """The period a budget is in at `now` (epoch seconds, UTC)."""
    if period == TOTAL:
        return Period("", None)
    today = datetime.datetime.fromtimestamp(now, datetime.UTC).date()
    if period == DAY:
        end = today + datetime.timedelta(days=1)
        return Period(today.isoformat(), _midnight(end))
    first_next = (today.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
    return Period(today.strftime("%Y-%m"), _midnight(first_next))


def _midnight(day: datetime.date) -> float:
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp()


def parse_usd(text: str, flag: str) -> int:
    """'12.50', '$0.25' -> micro-USD; BudgetError naming the flag otherwise."""
    cleaned = text.strip().removeprefix("$").replace(",", "").replace("_", "")
    try:
        dollars = Decimal(cleaned)
    except InvalidOperation as exc:
        raise BudgetError(f"{flag} {text!r} must be an amount in US dollars, such as 25 or 0.50") from exc
    if not dollars.is_finite() or dollars < 0:
        raise BudgetError(f"{flag} {text!r} must be a non-negative amount in US dollars")
    micro = dollars * _MICRO
    if micro != micro.to_integral_value():
        raise BudgetError(f"{flag} {text!r} has more than 6 decimals (budgets count micro-dollars)")
    return int(micro)


def usd(micro_usd: int) -> str:
    """123456 -> '$0.123456'; whole cents are shown with two decimals ('$12.50')."""
    sign = "-" if micro_usd < 0 else ""
    dollars, micro = divmod(abs(micro_usd), 1_000_000)
    if micro % 10_000 == 0:
        return f"{sign}${dollars:,}.{micro // 10_000:02d}"
    return f"{sign}${dollars:,}.{micro:06d}".rstrip("0")
