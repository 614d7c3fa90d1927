"""Dynamic membership: the replicas of `discover` upstreams, read from the registry, become the
router's members as they come and go.

Every `routing.discovery_interval_s` a `Discovery` reads each discovered upstream's pool from
the registry (`registry`) and hands the router (`Router.set_upstreams`) the static upstreams
plus one `HttpUpstream` per announced replica, named `<upstream>/<replica>` and configured like
the `discover` entry (tier, credential, timeouts, max_in_flight...) with the replica's url. So a
replica is routed to exactly like a configured upstream: tiers, health checks, breakers, retry
and failover, and whatever order policy the router uses. A replica that withdrew or expired
leaves; its connections close once their replies have.

While Redis cannot be read, the members stay as they were (logged, throttled): an outage of
the registry must not empty the router.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from strata.background import stop
from strata.config import Settings, UpstreamSettings
from strata.errors import ConfigError
from strata.gateway.upstream.registry import Registry, RegistryError, ReplicaRecord
from strata.gateway.upstream.router import Router
from strata.gateway.upstream.upstreams import HttpUpstream, Upstream

logger = logging.getLogger(__name__)


class Discovery:
    """Keeps one router's members in step with the registry. `start()` reads once (so the
    router knows the replicas announced so far before the first request) and then polls;
    `aclose()` stops polling and closes the registry client (not the router's upstreams)."""

    def __init__(
        self,
        router: Router,
        templates: Sequence[UpstreamSettings],
        registry: Registry,
        interval_s: float,
    ) -> None:
        assert all(t.discover is not None for t in templates)
        self.router = router
        self.templates = tuple(templates)
        self.registry = registry
        self.interval_s = interval_s
        self._static = tuple(m.upstream for m in router.members)
        self._found: dict[str, Upstream] = {}  # member name -> its upstream
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @classmethod
    def from_settings(cls, router: Router, settings: Settings) -> Discovery | None:
        """The discovery `settings.upstreams` ask for; None when none is discovered."""
        templates = [u for u in settings.upstreams if u.discover is not None]
        if not templates:
            return None
        assert settings.redis_url is not None  # the settings' validator requires it
        registry = Registry.from_url(settings.redis_url.get_secret_value())
        return cls(router, templates, registry, settings.routing.discovery_interval_s)

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._poll())

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None
        await self.registry.aclose()

    async def refresh(self) -> bool:
        """Read the registry once and update the router; True when its members changed.
        Members are kept as they are when the registry cannot be read."""
        try:
            found = [(t, await self.registry.replicas(_pool(t))) for t in self.templates]
        except RegistryError as exc:
            self._report(exc)
            return False
        self._report(None)
        upstreams = {}
        for template, records in found:
            for record in records:
                if (upstream := self._upstream(template, record)) is not None:
                    upstreams[upstream.name] = upstream
        if upstreams == self._found:
            return False
        self._found = upstreams
        for member in self.router.set_upstreams([*self._static, *upstreams.values()]):
            await member.upstream.aclose()  # busy connections close when their replies end
        logger.info("discovered upstreams now: %s", sorted(upstreams) or "none")
        return True

    def _upstream(self, template: UpstreamSettings, record: ReplicaRecord) -> Upstream | None:
        """The member for `record`: the one routed to already, or a new `HttpUpstream`; None
        (logged) when the record cannot be one: a bad url, or not serving the declared models."""
        name = f"{template.name}/{record.name}"
        known = self._found.get(name)
        if known is not None and known.settings.url == record.url:
            return known
        missing = sorted(set(template.models) - set(record.models))
        if missing:
            logger.warning("replica %s does not serve %s; not routing to it", name, missing)
            return None
        fields = {**template.model_dump(), "name": name, "url": record.url, "discover": None}
        try:
            return HttpUpstream(UpstreamSettings.model_validate(fields))
        except (ValueError, ConfigError) as exc:
            logger.warning("registry entry %s is not usable: %s", name, exc)
            return None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.refresh()
            except Exception:  # a bug must not silently freeze the membership
                logger.exception("discovery refresh failed")

    def _report(self, error: RegistryError | None) -> None:
        """Log the first failure of a run of them and the recovery, not every poll."""
        if error is not None and not self._failing:
            logger.warning("%s; keeping the upstreams known so far", error.message)
        elif error is None and self._failing:
            logger.info("registry readable again")
        self._failing = error is not None


def _pool(template: UpstreamSettings) -> str:
    assert template.discover is not None
    return template.discover
