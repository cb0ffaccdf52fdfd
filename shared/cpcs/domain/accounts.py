"""Observatories, users and their tokens."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cpcs.auth import digests_match, new_token, token_digest
from cpcs.db.models import Observatory, Point, Token, User, utcnow
from cpcs.domain.consent import set_sharing, sharing
from cpcs.errors import AuthenticationError, ConflictError, InputError, NotFoundError
from cpcs.lightcurve.aavso import valid_obscode
from cpcs.schemas import NewUserOut, ObservatoryOut, Role, UserOut
from cpcs.security import before_token_check, token_checked


def user_view(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        name=user.name,
        role=user.role,
        observatory=ObservatoryOut.model_validate(user.observatory),
        aavso_obscode=user.aavso_obscode,
        sharing=sharing(user),
    )


def _check_site(lon_deg: float | None, lat_deg: float | None) -> None:
    if lon_deg is not None and not -180.0 <= lon_deg <= 360.0:
        raise InputError("Longitude must be in degrees, between -180 and 360.", code="invalid_longitude")
    if lat_deg is not None and not -90.0 <= lat_deg <= 90.0:
        raise InputError("Latitude must be in degrees, between -90 and 90.", code="invalid_latitude")


def add_user(
    session: Session,
    name: str,
    *,
    observatory: str,
    lon_deg: float | None = None,
    lat_deg: float | None = None,
    elevation_m: float | None = None,
    role: Role = "observer",
) -> NewUserOut:
    """Create a user at an observatory (created if new) and return it with its one-time token."""
    name, observatory = name.strip(), observatory.strip()
    if not name or not observatory:
        raise InputError("A user needs a name and an observatory.", code="missing_fields")
    _check_site(lon_deg, lat_deg)
    site = session.scalar(select(Observatory).where(Observatory.name == observatory))
    if site is None:
        site = Observatory(name=observatory, lon_deg=lon_deg, lat_deg=lat_deg, elevation_m=elevation_m)
        session.add(site)
        session.flush()
    existing = session.scalar(select(User).where(User.name == name, User.observatory_id == site.id))
    if existing is not None:
        raise ConflictError(
            f"User {name!r} already exists at {observatory!r}; tokens are one per person per observatory.",
            code="user_exists",
        )
    user = User(name=name, observatory_id=site.id, role=role)
    session.add(user)
    session.flush()
    token = new_token()
    session.add(Token(user_id=user.id, digest=token_digest(token)))
    session.flush()
    session.refresh(user)
    return NewUserOut(**user_view(user).model_dump(), token=token)


def authenticate(session: Session, token: str | None) -> User:
    """The user owning an unrevoked token, or ``AuthenticationError``.

    Every token check of every interface comes here. Within an HTTP request the client's failures
    are counted (``cpcs.security.AuthThrottle``): a token that failed too often from this client
    raises ``TooManyAttempts`` (429) before the database is asked, and past the client's limit a
    wrong token raises it instead of ``AuthenticationError``; a valid token is always accepted.
    The lookup by digest is safe against timing: see ``cpcs.auth``.
    """
    if not token or not token.strip():
        raise AuthenticationError(
            "This needs your token (the CPCS hashtag): send it as the 'hashtag' field or an "
            "'Authorization: Bearer' header.",
        )
    before_token_check(token)
    if len(token) > 512:
        token_checked(token, ok=False)
        raise AuthenticationError("The token is not valid (too long).", code="invalid_token")
    digest = token_digest(token.strip())
    row = session.scalar(select(Token).where(Token.digest == digest, Token.revoked_at.is_(None)))
    user = session.get(User, row.user_id) if row is not None and digests_match(row.digest, digest) else None
    if user is None:
        token_checked(token, ok=False)
        raise AuthenticationError("The token is not valid (unknown or revoked).", code="invalid_token")
    token_checked(token, ok=True)
    return user


def revoke_tokens(session: Session, user_id: int) -> int:
    tokens = session.scalars(select(Token).where(Token.user_id == user_id, Token.revoked_at.is_(None))).all()
    for token in tokens:
        token.revoked_at = utcnow()
    return len(tokens)


def count_users(session: Session) -> int:
    return session.scalar(select(func.count(User.id))) or 0


def list_observatories(session: Session) -> list[ObservatoryOut]:
    counts = dict(
        session.execute(
            select(User.observatory_id, func.count(Point.id))
            .join(Point, Point.user_id == User.id)
            .where(Point.deleted_at.is_(None))
            .group_by(User.observatory_id)
        ).all()
    )
    observed_from = set(
        session.scalars(select(User.observatory_id).where(User.role != "admin").distinct()).all()
    )
    sites = session.scalars(select(Observatory).order_by(Observatory.name)).all()
    # An observatory is listed once it has an observer or a point: the one the first admin is
    # created at (a placeholder named "admin", with no location) is not a telescope.
    return [
        ObservatoryOut.model_validate(site).model_copy(update={"n_points": counts.get(site.id, 0)})
        for site in sites
        if site.id in observed_from or counts.get(site.id, 0) > 0
    ]


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"No user {user_id}.")
    return user


#: Leave a setting as it is (``update_account``).
UNCHANGED = object()


def update_account(
    session: Session,
    user_id: int,
    *,
    aavso_obscode: str | object | None = UNCHANGED,
    sharing_changes: dict[str, bool] | None = None,
) -> UserOut:
    """Set an observer's AAVSO observer code (``None`` removes it) and where their points may go."""
    code = aavso_obscode
    if isinstance(code, str):
        code = code.strip().upper() or None
        if code is not None and not valid_obscode(code):
            raise InputError(
                f"{aavso_obscode!r} is not an AAVSO observer code: letters and digits, at most 10.",
                code="invalid_aavso_obscode",
            )
    account = get_user(session, user_id)
    if code is not UNCHANGED:
        account.aavso_obscode = code if isinstance(code, str) else None
    if sharing_changes is not None:
        set_sharing(account, sharing_changes)
    session.flush()
    return user_view(account)
