"""Per-observer consent: which destinations an observer's points may leave CPCS for.

Four destinations: ``skyportal`` (the SkyPortal instances an admin registered), ``webhooks`` (anyone's
subscriptions), ``tns`` (TNS reports, an admin's included) and ``hermes`` (the Hopskotch topic the
operator configured). Everyone shares with all of them until they
say otherwise (``PATCH /api/v1/me {"sharing": {...}}``). A point already delivered still hears of its
updates and deletion: withdrawing consent stops new points, it does not leave stale copies behind.
The observer's own downloads (exports, AAVSO) are theirs and need no consent.
"""

from __future__ import annotations

from collections.abc import Mapping

from cpcs.db.models import User
from cpcs.errors import InputError

__all__ = ["DESTINATIONS", "may_share", "set_sharing", "sharing"]

#: Destination name -> the account's column.
DESTINATIONS: dict[str, str] = {
    "skyportal": "share_skyportal",
    "webhooks": "share_webhooks",
    "tns": "share_tns",
    "hermes": "share_hermes",
}


def sharing(user: User) -> dict[str, bool]:
    """The user's consent, by destination."""
    return {name: bool(getattr(user, column)) for name, column in DESTINATIONS.items()}


def may_share(user: User, destination: str) -> bool:
    """Whether ``user``'s points may go to ``destination``."""
    return bool(getattr(user, DESTINATIONS[destination]))


def set_sharing(user: User, changes: Mapping[str, bool]) -> None:
    """Change some of the user's consent (unknown destinations: an InputError, nothing changed)."""
    unknown = sorted(set(changes) - DESTINATIONS.keys())
    if unknown:
        raise InputError(
            f"Unknown destinations {', '.join(unknown)}; sharing covers {', '.join(DESTINATIONS)}.",
            code="unknown_destination",
        )
    for name, allowed in changes.items():
        setattr(user, DESTINATIONS[name], bool(allowed))
