"""API keys, tenants and users: the key format, verification, and admin operations on the store.

A key reads `sk-strata-<key id>_<secret>`. The key id (12 lowercase letters and digits) is
public: it names the key in listings, the ledger, the audit log and limiter scopes. The secret
is 32 random bytes, urlsafe-base64 encoded, and appears exactly once: in the `IssuedKey` that
`create_key`/`rotate` return. The store keeps only SHA-256 of the whole key. Verification finds
the row by key id and compares hashes with `hmac.compare_digest`.

Every admin operation writes its `audit_log` row in the same transaction as the change. Keys
and their hashes are never logged, audited or put into an error message.

This module knows nothing of HTTP; the gateway's auth step hands `verify` the bearer string.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import string
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from psycopg import AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from strata.errors import AuthenticationError, InvalidRequestError, NotFoundError
from strata.gateway.principal import Limits, Principal, Role
from strata.store.database import Pool

KEY_PREFIX = "sk-strata-"
KEY_ID_LENGTH = 12
SECRET_BYTES = 32
BOOTSTRAP_TENANT, BOOTSTRAP_USER = "default", "admin"
TOUCH_EVERY_S = 60.0  # last_used_at is refreshed at most this often per key (not per request)

_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
_KEY = re.compile(r"sk-strata-([a-z0-9]{12})_([A-Za-z0-9_-]{43,128})")
_KEY_ID = re.compile(r"[a-z0-9]{12}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BOOTSTRAP_LOCK_KEY = 0x737472617462  # pg_advisory_xact_lock: one bootstrap at a time
LIMIT_FIELDS = tuple(f.name for f in fields(Limits))
_COST_FIELDS = frozenset({"daily_cost_usd", "monthly_cost_usd"})
_INT32_FIELDS = frozenset({"rpm", "concurrent"})
_LIMIT_COLUMNS = ", ".join(LIMIT_FIELDS)
_KEY_COLUMNS = (
    "key_id, tenant, user_name, role, models, collections, name, description, "
    f"created_at, expires_at, revoked_at, last_used_at, {_LIMIT_COLUMNS}"
)
Cursor = AsyncCursor[DictRow]


# -- the key format -----------------------------------------------------------------------------


def new_key() -> tuple[str, str]:
    """A fresh (key id, full key)."""
    key_id = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def hash_key(key: str) -> bytes:
    """SHA-256 of the full key. A fast hash is right here, unlike for passwords: the secret
    is 256 random bits, so there is no dictionary to try and no brute force a slow hash
    (bcrypt, argon2) would slow down; it would only add latency to every cache miss."""
    return hashlib.sha256(key.encode()).digest()


def parse_key_id(presented: str | None) -> str:
    """The key id of a well-formed key; `AuthenticationError` for a missing or malformed one."""
    if not presented:
        raise _rejected("Missing API key: send 'Authorization: Bearer <your strata key>'.")
    match = _KEY.fullmatch(presented)
    if match is None:
        raise _rejected("Malformed API key: strata keys look like sk-strata-<key id>_<secret>.")
    return match[1]


def _rejected(message: str) -> AuthenticationError:
    return AuthenticationError(message, code="invalid_api_key")


# -- values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeySpec:
    """Everything a key allows, i.e. what `rotate` carries over to the new key."""

    tenant: str
    user: str
    role: Role = "user"
    limits: Limits = field(default_factory=Limits)
    models: tuple[str, ...] | None = None  # None: every model
    collections: tuple[str, ...] | None = None  # None: every RAG collection
    expires_at: datetime | None = None
    name: str | None = None
    description: str | None = None

    def audit_detail(self) -> dict[str, Any]:
        detail = _key_params(self)
        detail = {k: v for k, v in detail.items() if k not in LIMIT_FIELDS}
        detail["limits"] = _set_limits(self.limits)
        detail["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        return detail


KeyStatus = Literal["active", "revoked", "expired"]


@dataclass(frozen=True)
class KeyInfo:
    """One stored key as admins see it: no secret, no hash."""

    key_id: str
    spec: KeySpec
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def status(self, now: datetime) -> KeyStatus:
        if self.revoked_at is not None:
            return "revoked"
        expires_at = self.spec.expires_at
        return "expired" if expires_at is not None and expires_at <= now else "active"


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: the only place its secret ever appears (kept out of repr)."""

    key: str = field(repr=False)
    info: KeyInfo

    @property
    def key_id(self) -> str:
        return self.info.key_id


@dataclass(frozen=True)
class TenantInfo:
    name: str
    require_dpa: bool
    limits: Limits
    created_at: datetime


@dataclass(frozen=True)
class UserInfo:
    tenant: str
    name: str
    limits: Limits


# -- validation (anything an admin types) -------------------------------------------------------


def check_name(value: str, param: str) -> str:
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise InvalidRequestError(
            f"{param} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
            f"digit (got {value!r}).",
            param=param,
        )
    return value


def check_role(role: str) -> Role:
    if role not in get_args(Role):
        raise InvalidRequestError(f"role must be 'admin' or 'user' (got {role!r}).", param="role")
    return "admin" if role == "admin" else "user"


def check_limits(limits: Limits) -> Limits:
    for name in LIMIT_FIELDS:
        value = getattr(limits, name)
        if value is not None and not _limit_ok(name, value):
            kind = "number of US dollars" if name in _COST_FIELDS else "whole number"
            raise InvalidRequestError(
                f"{name} must be a non-negative {kind} within range, or unset for no limit "
                f"(got {value!r}).",
                param=name,
            )
    return limits


def _limit_ok(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return False
    if name in _COST_FIELDS:
        return isinstance(value, int | float) and math.isfinite(value) and 0 <= value < 1e12
    ceiling = 2**31 - 1 if name in _INT32_FIELDS else 2**63 - 1
    return isinstance(value, int) and 0 <= value <= ceiling


def check_names_list(values: Sequence[str] | None, param: str) -> tuple[str, ...] | None:
    """None stays None (everything allowed); else a non-empty list of non-empty names."""
    if values is None:
        return None
    cleaned = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    if not cleaned or any(len(v) > 200 for v in cleaned):
        raise InvalidRequestError(
            f"{param} must name at least one entry (each up to 200 characters); leave it unset "
            f"to allow all {param}.",
            param=param,
        )
    return cleaned


def check_spec(spec: KeySpec, now: datetime) -> KeySpec:
    check_name(spec.tenant, "tenant")
    check_name(spec.user, "user")
    check_role(spec.role)
    check_limits(spec.limits)
    _check_text(spec.name, "name", 200)
    _check_text(spec.description, "description", 2000)
    expires = spec.expires_at
    if expires is not None and (expires.tzinfo is None or expires <= now):
        raise InvalidRequestError(
            "expires_at must be a timezone-aware time in the future.", param="expires_at"
        )
    return spec


def _check_text(value: str | None, param: str, longest: int) -> None:
    if value is not None and len(value) > longest:
        raise InvalidRequestError(f"{param} must be at most {longest} characters.", param=param)


# -- the store ----------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


class KeyStore:
    """Keys, tenants and users in PostgreSQL, over the async pool. Safe for concurrent use;
    each method is one transaction. `actor` (who asked: an admin key id, 'cli', 'bootstrap')
    is what the audit log records."""

    def __init__(self, pool: Pool, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._pool = pool
        self._clock = clock

    # keys

    async def create_key(
        self,
        tenant: str,
        user: str,
        *,
        role: str = "user",
        limits: Limits | None = None,
        models: Sequence[str] | None = None,
        collections: Sequence[str] | None = None,
        expires_at: datetime | None = None,
        name: str | None = None,
        description: str | None = None,
        actor: str = "cli",
    ) -> IssuedKey:
        """Issue a key (creating the tenant and user rows when missing)."""
        spec = KeySpec(
            tenant,
            user,
            check_role(role),
            limits or Limits(),
            check_names_list(models, "models"),
            check_names_list(collections, "collections"),
            expires_at,
            name,
            description,
        )
        check_spec(spec, self._clock())
        async with self._transaction() as cur:
            await _ensure_user(cur, tenant, user, actor)
            issued = await _insert_key(cur, spec)
            await _audit(cur, actor, "key.create", issued.key_id, spec.audit_detail())
        return issued

    async def list_keys(self, tenant: str | None = None) -> list[KeyInfo]:
        """Every key (of one tenant), oldest first, revoked ones included."""
        async with self._transaction() as cur:
            await cur.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys "
                "WHERE %(tenant)s::text IS NULL OR tenant = %(tenant)s "
                "ORDER BY created_at, key_id",
                {"tenant": tenant},
            )
            return [_key_info(row) for row in await cur.fetchall()]

    async def revoke(self, key_id: str, *, actor: str = "cli") -> KeyInfo:
        """Revoke a key; revoking a revoked key changes nothing. `NotFoundError` if unknown."""
        async with self._transaction() as cur:
            await cur.execute(
                f"UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL "
                f"RETURNING {_KEY_COLUMNS}",
                (key_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return await _find_key(cur, key_id)  # already revoked, or NotFoundError
            await _audit(cur, actor, "key.revoke", key_id, {})
        return _key_info(row)

    async def rotate(self, key_id: str, *, actor: str = "cli") -> IssuedKey:
        """Replace a key by a new one with the same settings; the old one is revoked in the
        same transaction, so exactly one of the two works at any moment."""
        async with self._transaction() as cur:
            old = await _find_key(cur, key_id, for_update=True)
            if old.status(self._clock()) != "active":
                raise InvalidRequestError(
                    f"Key {key_id} is {old.status(self._clock())}: create a new key instead.",
                    param="key_id",
                )
            await cur.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", (key_id,))
            issued = await _insert_key(cur, old.spec)
            await _audit(cur, actor, "key.rotate", key_id, {"new_key_id": issued.key_id})
        return issued

    async def verify(self, presented_key: str | None) -> Principal:
        """The principal behind a presented key; `AuthenticationError` (401, invalid_api_key)
        for a missing, malformed, unknown, revoked or expired key."""
        key_id = parse_key_id(presented_key)
        assert presented_key is not None
        async with self._transaction() as cur:
            await cur.execute(_VERIFY_SQL, (key_id,))
            row = await cur.fetchone()
            if row is None or not hmac.compare_digest(
                bytes(row["key_hash"]), hash_key(presented_key)
            ):
                raise _rejected("Incorrect API key provided.")
            self._check_usable(row)
            await self._touch(cur, row)
        return _principal(row)

    def _check_usable(self, row: Mapping[str, Any]) -> None:
        if row["revoked_at"] is not None:
            raise _rejected(f"This API key (id {row['key_id']}) has been revoked.")
        if row["expires_at"] is not None and row["expires_at"] <= self._clock():
            raise _rejected(
                f"This API key (id {row['key_id']}) expired at {row['expires_at'].isoformat()}."
            )

    async def _touch(self, cur: Cursor, row: Mapping[str, Any]) -> None:
        last = row["last_used_at"]
        if last is None or (self._clock() - last).total_seconds() >= TOUCH_EVERY_S:
            await cur.execute(
                "UPDATE api_keys SET last_used_at = now() WHERE key_id = %s", (row["key_id"],)
            )

    async def ensure_bootstrap_admin(self) -> IssuedKey | None:
        """The first admin key (tenant 'default', user 'admin') when no admin key was ever
        issued; None otherwise. Concurrent callers (replicas starting at once) get one key."""
        spec = KeySpec(BOOTSTRAP_TENANT, BOOTSTRAP_USER, "admin", name="bootstrap admin key")
        async with self._transaction() as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_BOOTSTRAP_LOCK_KEY,))
            await cur.execute("SELECT 1 FROM api_keys WHERE role = 'admin' LIMIT 1")
            if await cur.fetchone() is not None:
                return None
            await _ensure_user(cur, spec.tenant, spec.user, "bootstrap")
            issued = await _insert_key(cur, spec)
            await _audit(cur, "bootstrap", "key.create", issued.key_id, spec.audit_detail())
        return issued

    # tenants and users

    async def create_tenant(
        self,
        name: str,
        *,
        require_dpa: bool = False,
        limits: Limits | None = None,
        actor: str = "cli",
    ) -> TenantInfo:
        """A new tenant; `InvalidRequestError` (code tenant_exists) if the name is taken."""
        check_name(name, "tenant")
        limits = check_limits(limits or Limits())
        async with self._transaction() as cur:
            await cur.execute(
                "INSERT INTO tenants (name) VALUES (%s) ON CONFLICT DO NOTHING RETURNING name",
                (name,),
            )
            if await cur.fetchone() is None:
                raise InvalidRequestError(
                    f"Tenant {name!r} already exists; change it with `strata tenants update`.",
                    code="tenant_exists",
                    param="tenant",
                )
            tenant = await _write_tenant(cur, name, require_dpa, limits)
            await _audit(cur, actor, "tenant.create", name, _tenant_detail(tenant))
        return tenant

    async def update_tenant(
        self,
        name: str,
        *,
        require_dpa: bool | None = None,
        limits: Limits | None = None,
        actor: str = "cli",
    ) -> TenantInfo:
        """Change what is given (`limits` replaces all seven limits); `NotFoundError` if unknown."""
        if limits is not None:
            check_limits(limits)
        async with self._transaction() as cur:
            old = await _find_tenant(cur, name, for_update=True)
            dpa = old.require_dpa if require_dpa is None else require_dpa
            tenant = await _write_tenant(cur, name, dpa, old.limits if limits is None else limits)
            await _audit(cur, actor, "tenant.update", name, _tenant_detail(tenant))
        return tenant

    async def get_tenant(self, name: str) -> TenantInfo:
        async with self._transaction() as cur:
            return await _find_tenant(cur, name)

    async def list_tenants(self) -> list[TenantInfo]:
        async with self._transaction() as cur:
            await cur.execute(f"SELECT {_TENANT_COLUMNS} FROM tenants ORDER BY name")
            return [_tenant_info(row) for row in await cur.fetchall()]

    async def set_user_limits(
        self, tenant: str, user: str, limits: Limits, *, actor: str = "cli"
    ) -> UserInfo:
        """Replace a user's limits (creating the tenant and user rows when missing)."""
        check_name(tenant, "tenant")
        check_name(user, "user")
        check_limits(limits)
        assignments = ", ".join(f"{name} = %({name})s" for name in LIMIT_FIELDS)
        async with self._transaction() as cur:
            await _ensure_user(cur, tenant, user, actor)
            await cur.execute(
                f"UPDATE users SET {assignments} WHERE tenant = %(tenant)s AND name = %(user)s",
                {**limit_params(limits), "tenant": tenant, "user": user},
            )
            detail = _set_limits(limits)
            await _audit(cur, actor, "user.limits", f"{tenant}/{user}", detail)
        return UserInfo(tenant, user, limits)

    async def audit(
        self, actor: str, action: str, target: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        """Record an admin action that changes no key or tenant (e.g. draining an upstream)."""
        async with self._transaction() as cur:
            await _audit(cur, actor, action, target, detail or {})

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Cursor]:
        """A cursor in one transaction: committed on a clean exit, rolled back on an error."""
        async with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            yield cur


# -- SQL helpers (one transaction's cursor in, rows out) ----------------------------------------

_TENANT_COLUMNS = f"name, require_dpa, created_at, {_LIMIT_COLUMNS}"
_VERIFY_SQL = (
    f"SELECT k.key_hash, {', '.join(f'k.{c}' for c in _KEY_COLUMNS.split(', '))}, "
    + ", ".join(f"u.{n} AS u_{n}, t.{n} AS t_{n}" for n in LIMIT_FIELDS)
    + ", t.require_dpa FROM api_keys k "
    "JOIN users u ON u.tenant = k.tenant AND u.name = k.user_name "
    "JOIN tenants t ON t.name = k.tenant WHERE k.key_id = %s"
)


_INSERT_KEY_SQL = (
    "INSERT INTO api_keys (key_id, tenant, user_name, role, key_hash, models, collections, "
    f"name, description, expires_at, {_LIMIT_COLUMNS}) VALUES (%(key_id)s, %(tenant)s, "
    "%(user)s, %(role)s, %(hash)s, %(models)s, %(collections)s, %(name)s, %(description)s, "
    f"%(expires_at)s, {', '.join(f'%({n})s' for n in LIMIT_FIELDS)}) RETURNING {_KEY_COLUMNS}"
)


async def _audit(
    cur: Cursor, actor: str, action: str, target: str, detail: Mapping[str, Any]
) -> None:
    await cur.execute(
        "INSERT INTO audit_log (actor, action, target, detail) VALUES (%s, %s, %s, %s)",
        (actor, action, target, Jsonb(dict(detail))),
    )


async def _ensure_user(cur: Cursor, tenant: str, user: str, actor: str) -> None:
    """Create the tenant and user rows when missing (each creation audited)."""
    await cur.execute(
        "INSERT INTO tenants (name) VALUES (%s) ON CONFLICT DO NOTHING RETURNING name", (tenant,)
    )
    if await cur.fetchone() is not None:
        await _audit(cur, actor, "tenant.create", tenant, {"implicit": True})
    await cur.execute(
        "INSERT INTO users (tenant, name) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING name",
        (tenant, user),
    )
    if await cur.fetchone() is not None:
        await _audit(cur, actor, "user.create", f"{tenant}/{user}", {"implicit": True})


async def _insert_key(cur: Cursor, spec: KeySpec) -> IssuedKey:
    key_id, key = new_key()
    await cur.execute(
        _INSERT_KEY_SQL, {**_key_params(spec), "key_id": key_id, "hash": hash_key(key)}
    )
    row = await cur.fetchone()
    assert row is not None
    return IssuedKey(key, _key_info(row))


def _key_params(spec: KeySpec) -> dict[str, Any]:
    return {
        **limit_params(spec.limits),
        "tenant": spec.tenant,
        "user": spec.user,
        "role": spec.role,
        "models": _list(spec.models),
        "collections": _list(spec.collections),
        "name": spec.name,
        "description": spec.description,
        "expires_at": spec.expires_at,
    }


def limit_params(limits: Limits) -> dict[str, int | float | None]:
    """The seven limits as query parameters named like their columns."""
    return {name: getattr(limits, name) for name in LIMIT_FIELDS}


def _list(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


async def _find_key(cur: Cursor, key_id: str, *, for_update: bool = False) -> KeyInfo:
    lock = " FOR UPDATE" if for_update else ""
    await cur.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = %s{lock}", (key_id,))
    row = await cur.fetchone()
    if row is None:
        # Never echo something that is not a key id: it may be a whole key pasted by mistake.
        shown = f"id {key_id!r}" if _KEY_ID.fullmatch(key_id) else "that id"
        raise NotFoundError(
            f"No API key with {shown}; `strata keys list` shows the key ids.",
            code="key_not_found",
            param="key_id",
        )
    return _key_info(row)


async def _find_tenant(cur: Cursor, name: str, *, for_update: bool = False) -> TenantInfo:
    lock = " FOR UPDATE" if for_update else ""
    await cur.execute(f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE name = %s{lock}", (name,))
    row = await cur.fetchone()
    if row is None:
        raise NotFoundError(
            f"No tenant {name!r}; `strata tenants list` shows them.",
            code="tenant_not_found",
            param="tenant",
        )
    return _tenant_info(row)


async def _write_tenant(cur: Cursor, name: str, require_dpa: bool, limits: Limits) -> TenantInfo:
    assignments = ", ".join(f"{n} = %({n})s" for n in LIMIT_FIELDS)
    await cur.execute(
        f"UPDATE tenants SET require_dpa = %(dpa)s, {assignments} WHERE name = %(name)s "
        f"RETURNING {_TENANT_COLUMNS}",
        {**limit_params(limits), "dpa": require_dpa, "name": name},
    )
    row = await cur.fetchone()
    assert row is not None
    return _tenant_info(row)


def _tenant_detail(tenant: TenantInfo) -> dict[str, Any]:
    return {"require_dpa": tenant.require_dpa, "limits": _set_limits(tenant.limits)}


def _set_limits(limits: Limits) -> dict[str, int | float]:
    return {k: v for k, v in limit_params(limits).items() if v is not None}


# -- rows -> values -----------------------------------------------------------------------------


def limits_from_row(row: Mapping[str, Any], prefix: str = "") -> Limits:
    """Limits from the seven limit columns (named `<prefix><field>`); numeric -> float."""
    values = {name: row[prefix + name] for name in LIMIT_FIELDS}
    return Limits(**{k: _number(v) for k, v in values.items()})


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def _tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def _key_info(row: Mapping[str, Any]) -> KeyInfo:
    spec = KeySpec(
        tenant=row["tenant"],
        user=row["user_name"],
        role=check_role(row["role"]),
        limits=limits_from_row(row),
        models=_tuple(row["models"]),
        collections=_tuple(row["collections"]),
        expires_at=row["expires_at"],
        name=row["name"],
        description=row["description"],
    )
    return KeyInfo(row["key_id"], spec, row["created_at"], row["revoked_at"], row["last_used_at"])


def _tenant_info(row: Mapping[str, Any]) -> TenantInfo:
    return TenantInfo(row["name"], row["require_dpa"], limits_from_row(row), row["created_at"])


def _principal(row: Mapping[str, Any]) -> Principal:
    info = _key_info(row)
    spec = info.spec
    return Principal(
        key_id=info.key_id,
        tenant=spec.tenant,
        user=spec.user,
        role=spec.role,
        key_limits=spec.limits,
        user_limits=limits_from_row(row, "u_"),
        tenant_limits=limits_from_row(row, "t_"),
        models=None if spec.models is None else frozenset(spec.models),
        collections=None if spec.collections is None else frozenset(spec.collections),
        require_dpa=row["require_dpa"],
        expires_at=spec.expires_at,
    )
