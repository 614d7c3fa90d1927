from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from strata.errors import AuthenticationError, InvalidRequestError, NotFoundError
from strata.gateway.identity import (
    BOOTSTRAP_TENANT,
    KEY_PREFIX,
    KeyStore,
    hash_key,
    parse_key_id,
)
from strata.gateway.principal import Limits
from strata.store.database import Database, bundled_bin_dir

KEY_LIMITS = Limits(rpm=60, tpm=10_000, concurrent=2, daily_cost_usd=1.5)
USER_LIMITS = Limits(daily_tokens=100_000)
TENANT_LIMITS = Limits(monthly_tokens=5_000_000, monthly_cost_usd=250.0)


@pytest.fixture
def store(pg_database: Database) -> KeyStore:
    return KeyStore(pg_database.pool)


async def _rows(database: Database, query: str) -> list[tuple[Any, ...]]:
    async with database.pool.connection() as conn:
        cursor = await conn.execute(query)
        return await cursor.fetchall()


async def _audit(database: Database) -> list[tuple[Any, ...]]:
    return await _rows(database, "SELECT actor, action, target FROM audit_log ORDER BY id")


async def _rejection(store: KeyStore, presented: str | None) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        await store.verify(presented)
    assert caught.value.code == "invalid_api_key"
    assert caught.value.status_code == 401
    return caught.value


async def test_issued_key_has_the_documented_format(store: KeyStore) -> None:
    issued = await store.create_key("acme", "alice")
    key_id, secret = issued.key.removeprefix(KEY_PREFIX).split("_", 1)
    assert issued.key.startswith(KEY_PREFIX)
    assert key_id == issued.key_id and len(key_id) == 12 and key_id.isalnum()
    assert len(secret) >= 43  # 32 random bytes, urlsafe base64
    assert parse_key_id(issued.key) == issued.key_id
    assert issued.key not in repr(issued)


async def test_verify_joins_key_user_and_tenant_settings(store: KeyStore) -> None:
    await store.create_tenant("acme", require_dpa=True, limits=TENANT_LIMITS)
    await store.set_user_limits("acme", "alice", USER_LIMITS)
    expires = datetime.now(UTC) + timedelta(days=30)
    issued = await store.create_key(
        "acme",
        "alice",
        limits=KEY_LIMITS,
        models=["gpt-x", "small"],
        collections=["docs"],
        expires_at=expires,
        name="ci",
    )
    principal = await store.verify(issued.key)
    assert (principal.key_id, principal.tenant, principal.user) == (issued.key_id, "acme", "alice")
    assert principal.role == "user" and principal.require_dpa
    assert principal.key_limits == KEY_LIMITS
    assert principal.user_limits == USER_LIMITS
    assert principal.tenant_limits == TENANT_LIMITS
    assert principal.models == frozenset({"gpt-x", "small"})
    assert principal.collections == frozenset({"docs"})
    assert principal.expires_at == expires
    assert principal.may_use_model("small") and not principal.may_use_model("other")


async def test_unscoped_key_may_use_everything(store: KeyStore) -> None:
    principal = await store.verify((await store.create_key("acme", "bob")).key)
    assert principal.models is None and principal.collections is None
    assert principal.key_limits.is_unlimited and not principal.require_dpa


async def test_bad_keys_are_rejected_without_echoing_them(store: KeyStore) -> None:
    issued = await store.create_key("acme", "alice")
    wrong_secret = issued.key[:-4] + ("AAAA" if not issued.key.endswith("AAAA") else "BBBB")
    unknown = KEY_PREFIX + "zzzzzzzzzzzz_" + "x" * 43
    for presented in (None, "", "Bearer nope", "sk-strata-short_abc", wrong_secret, unknown):
        error = await _rejection(store, presented)
        if presented:
            assert presented not in error.message
            assert presented[-12:] not in error.message


async def test_revoked_key_is_rejected_and_revoking_twice_changes_nothing(
    store: KeyStore, pg_database: Database
) -> None:
    issued = await store.create_key("acme", "alice")
    revoked = await store.revoke(issued.key_id, actor="adminkey0001")
    assert revoked.revoked_at is not None and revoked.status(datetime.now(UTC)) == "revoked"
    assert "revoked" in (await _rejection(store, issued.key)).message
    again = await store.revoke(issued.key_id)
    assert again.revoked_at == revoked.revoked_at
    actions = [row[1] for row in await _audit(pg_database)]
    assert actions.count("key.revoke") == 1


async def test_revoking_an_unknown_key_is_not_found_and_never_echoes_a_pasted_key(
    store: KeyStore,
) -> None:
    with pytest.raises(NotFoundError) as caught:
        await store.revoke("abcdefabcdef")
    assert "abcdefabcdef" in caught.value.message and caught.value.param == "key_id"
    pasted = KEY_PREFIX + "abcdefabcdef_" + "s" * 43
    with pytest.raises(NotFoundError) as caught:
        await store.revoke(pasted)
    assert "sss" not in caught.value.message


async def test_rotate_keeps_settings_and_revokes_the_old_key(store: KeyStore) -> None:
    old = await store.create_key(
        "acme", "alice", role="admin", limits=KEY_LIMITS, models=["m"], name="deploy"
    )
    new = await store.rotate(old.key_id, actor="cli")
    assert new.key_id != old.key_id and new.key != old.key
    assert new.info.spec == old.info.spec
    await _rejection(store, old.key)
    principal = await store.verify(new.key)
    assert principal.role == "admin" and principal.key_limits == KEY_LIMITS
    with pytest.raises(InvalidRequestError, match="revoked"):
        await store.rotate(old.key_id)
    with pytest.raises(NotFoundError):
        await store.rotate("nokeynokey12")


async def test_expired_key_is_rejected(pg_database: Database) -> None:
    now = datetime.now(UTC)
    issued = await KeyStore(pg_database.pool).create_key(
        "acme", "alice", expires_at=now + timedelta(hours=1)
    )
    later = KeyStore(pg_database.pool, clock=lambda: now + timedelta(hours=2))
    assert "expired" in (await _rejection(later, issued.key)).message
    with pytest.raises(InvalidRequestError, match="expired"):
        await later.rotate(issued.key_id)
    assert (await KeyStore(pg_database.pool).verify(issued.key)).key_id == issued.key_id


async def test_verify_records_last_use_at_most_once_a_minute(
    store: KeyStore, pg_database: Database
) -> None:
    issued = await store.create_key("acme", "alice")
    assert (await store.list_keys())[0].last_used_at is None
    await store.verify(issued.key)
    first = (await store.list_keys())[0].last_used_at
    await store.verify(issued.key)
    assert first is not None and (await store.list_keys())[0].last_used_at == first


async def test_list_keys_filters_by_tenant_and_holds_no_secrets(store: KeyStore) -> None:
    a = await store.create_key("acme", "alice")
    b = await store.create_key("globex", "bob")
    everything = await store.list_keys()
    assert [k.key_id for k in everything] == [a.key_id, b.key_id]
    assert [k.key_id for k in await store.list_keys("globex")] == [b.key_id]
    text = repr(everything)
    for issued in (a, b):
        assert issued.key.split("_", 1)[1] not in text
        assert hash_key(issued.key).hex() not in text


async def test_every_admin_action_is_audited(store: KeyStore, pg_database: Database) -> None:
    issued = await store.create_key("acme", "alice", actor="cli")
    await store.create_key("acme", "alice")
    rotated = await store.rotate(issued.key_id, actor="k1")
    await store.revoke(rotated.key_id, actor="k1")
    await store.create_tenant("globex", limits=Limits(rpm=5))
    await store.update_tenant("globex", require_dpa=True)
    await store.set_user_limits("globex", "carol", Limits(tpm=10))
    assert [row[1:] for row in await _audit(pg_database)] == [
        ("tenant.create", "acme"),
        ("user.create", "acme/alice"),
        ("key.create", issued.key_id),
        ("key.create", (await store.list_keys())[1].key_id),
        ("key.rotate", issued.key_id),
        ("key.revoke", rotated.key_id),
        ("tenant.create", "globex"),
        ("tenant.update", "globex"),
        ("user.create", "globex/carol"),
        ("user.limits", "globex/carol"),
    ]
    details = await _rows(pg_database, "SELECT detail::text FROM audit_log")
    assert not any(issued.key_id + "_" in d[0] or "sk-strata-" in d[0] for d in details)


async def test_bootstrap_admin_is_created_once_even_when_racing(store: KeyStore) -> None:
    results = await asyncio.gather(*(store.ensure_bootstrap_admin() for _ in range(2)))
    issued = [r for r in results if r is not None]
    assert len(issued) == 1
    principal = await store.verify(issued[0].key)
    assert principal.role == "admin" and principal.tenant == BOOTSTRAP_TENANT
    await store.revoke(issued[0].key_id)
    assert await store.ensure_bootstrap_admin() is None  # an admin key was issued once already


async def test_the_secret_is_never_stored(store: KeyStore, pg_dsn: str) -> None:
    issued = await store.create_key("acme", "alice", name="dump-me")
    rotated = await store.rotate(issued.key_id)
    dump = subprocess.run(
        [str(bundled_bin_dir() / "pg_dump"), "--data-only", "-d", pg_dsn],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "dump-me" in dump and hash_key(issued.key).hex() in dump  # the dump has the rows
    for key in (issued.key, rotated.key):
        assert key.split("_", 1)[1] not in dump


@pytest.mark.parametrize(
    ("call", "param"),
    [
        ({"tenant": "bad tenant"}, "tenant"),
        ({"tenant": "a/b"}, "tenant"),
        ({"user": ""}, "user"),
        ({"user": "x" * 65}, "user"),
        ({"role": "root"}, "role"),
        ({"limits": Limits(rpm=-1)}, "rpm"),
        ({"limits": Limits(tpm=True)}, "tpm"),
        ({"limits": Limits(concurrent=2**31)}, "concurrent"),
        ({"limits": Limits(daily_cost_usd=float("nan"))}, "daily_cost_usd"),
        ({"models": []}, "models"),
        ({"collections": [" "]}, "collections"),
        ({"expires_at": datetime.now(UTC) - timedelta(seconds=1)}, "expires_at"),
        ({"expires_at": datetime(2999, 1, 1)}, "expires_at"),
        ({"name": "n" * 201}, "name"),
    ],
)
async def test_bad_input_names_the_field(store: KeyStore, call: dict[str, Any], param: str) -> None:
    arguments: dict[str, Any] = {"tenant": "acme", "user": "alice", **call}
    with pytest.raises(InvalidRequestError) as caught:
        await store.create_key(**arguments)
    assert caught.value.param == param
    assert await store.list_keys() == []


async def test_tenants_are_created_updated_and_listed(store: KeyStore) -> None:
    created = await store.create_tenant("acme", limits=TENANT_LIMITS)
    assert not created.require_dpa and created.limits == TENANT_LIMITS
    with pytest.raises(InvalidRequestError) as caught:
        await store.create_tenant("acme")
    assert caught.value.code == "tenant_exists"
    updated = await store.update_tenant("acme", require_dpa=True)
    assert updated.require_dpa and updated.limits == TENANT_LIMITS  # untouched
    cleared = await store.update_tenant("acme", limits=Limits(rpm=1))
    assert cleared.limits == Limits(rpm=1) and cleared.require_dpa
    assert await store.get_tenant("acme") == cleared
    await store.create_key("globex", "bob")  # creates its tenant implicitly
    assert [t.name for t in await store.list_tenants()] == ["acme", "globex"]
    with pytest.raises(NotFoundError):
        await store.update_tenant("initech", require_dpa=True)
