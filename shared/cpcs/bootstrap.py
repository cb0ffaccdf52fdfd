"""First start on an empty data folder: create an admin and hand out its token once."""

from __future__ import annotations

from cpcs.context import Context
from cpcs.domain.accounts import add_user, count_users
from cpcs.settings import Settings


def bootstrap_admin(context: Context, settings: Settings) -> str | None:
    """Create the first admin if there are no users; returns the token to print, else None."""
    with context.db.transaction() as session:
        if count_users(session) > 0:
            return None
        user = add_user(session, "admin", observatory="admin", role="admin")
        if settings.admin_token is None:
            return user.token
    # A configured token replaces the generated one (for deployments that inject secrets).
    from cpcs.auth import token_digest
    from cpcs.db.models import Token

    with context.db.transaction() as session:
        row = session.query(Token).filter(Token.user_id == user.id).one()
        row.digest = token_digest(settings.admin_token.get_secret_value())
    return None
