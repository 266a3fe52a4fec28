"""Object-level access, the part every service answers the same way.

A token bound to a person (`subject`) with the collector role reaches only that person's
portfolio: the customers whose owner they are. Each service finds the customers a request is
about from its own tables (`<service>/portfolio.py`); who is bound, and the two answers, are
here: 404 for another portfolio's customer (the answer for an id that does not exist, so
guessing ids reveals nothing) and 403 for a list wider than the caller's own.
"""

from __future__ import annotations

from duewise_service.auth import Principal
from duewise_service.problems import DomainError


def bound_to_portfolio(principal: Principal) -> bool:
    """Admins, systems and collector tokens minted before subjects existed are not bound."""
    return principal.role == "collector" and principal.subject is not None


def outside_portfolio(detail: str) -> DomainError:
    """403: a list or report wider than the caller's portfolio."""
    return DomainError(403, "Outside your portfolio", detail, code="outside-portfolio")


def not_in_portfolio(customer_id: str) -> DomainError:
    """404, worded as for a customer that does not exist."""
    return DomainError(404, "Customer not found", f"no customer {customer_id!r}", code="not-found")
