"""Login leases on a fake clock: a userpass login's token and lease expire with its TTL, renewals stop at the
max TTL, and the maintenance pass revokes the token and drops the lease; both survive a restart of the core."""

import asyncio

import pytest

from storage import MemoryBackend
from vaultd.clock import FakeClock
from vaultd.core.core import Core, LogicalRequest
from vaultd.core.physical import LocalPhysical
from vaultd.engines.auth.userpass import userpass_backend
from vaultd.sdk.errors import InvalidRequest
from vaultd.sdk.request import Operation


def build(backend, clock) -> Core:
    methods = {"userpass": lambda options: userpass_backend()}
    return Core(LocalPhysical(backend), clock, engines={}, auth_methods=methods)


async def call(core, operation, path, data=None, token=""):
    return (await core.handle(LogicalRequest(operation, path, data or {}, token))).response


async def logged_in(core, root):
    await call(core, Operation.UPDATE, "sys/auth/userpass", {"type": "userpass"}, root)
    await call(core, Operation.UPDATE, "auth/userpass/users/bob",
               {"password": "pw", "token_ttl": "1h", "token_max_ttl": "2h"}, root)
    auth = (await call(core, Operation.UPDATE, "auth/userpass/login/bob", {"password": "pw"})).auth
    leases = await core.leases.list("auth/userpass/login/bob/")
    return auth, f"auth/userpass/login/bob/{leases[0]}"


def test_a_login_lease_expires_with_its_token_and_survives_a_restart():
    async def scenario():
        clock, backend = FakeClock(), MemoryBackend()
        core = build(backend, clock)
        init = await core.initialize({"secret_shares": 1, "secret_threshold": 1})
        await core.unseal(bytes.fromhex(init["keys"][0]))
        auth, lease_id = await logged_in(core, init["root_token"])
        assert auth["lease_duration"] == 3600
        assert (await core.leases.lookup(lease_id))["ttl"] == 3600
        restarted = build(backend, clock)  # a new core over the same store: the lease is still there
        await restarted.unseal(bytes.fromhex(init["keys"][0]))
        assert (await restarted.leases.lookup(lease_id))["path"] == "auth/userpass/login/bob"
        clock.advance(3601)
        assert await restarted.maintenance_pass() == 1
        assert await restarted.tokens.lookup(auth["client_token"]) is None
        with pytest.raises(InvalidRequest, match="invalid lease"):
            await restarted.leases.lookup(lease_id)

    asyncio.run(scenario())


def test_renewals_stop_at_the_max_ttl():
    async def scenario():
        clock = FakeClock()
        core = build(MemoryBackend(), clock)
        init = await core.initialize({"secret_shares": 1, "secret_threshold": 1})
        await core.unseal(bytes.fromhex(init["keys"][0]))
        auth, _ = await logged_in(core, init["root_token"])
        clock.advance(3000)
        renewed = await call(core, Operation.UPDATE, "auth/token/renew-self", {"increment": "1h"},
                             auth["client_token"])
        assert renewed.auth["lease_duration"] == 3600
        clock.advance(3500)
        capped = await call(core, Operation.UPDATE, "auth/token/renew-self", {"increment": "1h"},
                            auth["client_token"])
        assert capped.auth["lease_duration"] == 2 * 3600 - 6500 and capped.warnings
        clock.advance(701)
        assert await core.tokens.lookup(auth["client_token"]) is None

    asyncio.run(scenario())
