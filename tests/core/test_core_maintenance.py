"""The core's maintenance pass, on a fake clock: it revokes expired tokens and counts the rest."""

import asyncio

from storage import MemoryBackend
from vaultd.clock import FakeClock
from vaultd.core.core import Core
from vaultd.core.ha import Standalone
from vaultd.core.physical import LocalPhysical
from vaultd.core.tokens import TokenEntry


def test_the_maintenance_pass_revokes_expired_tokens_and_counts_the_rest():
    async def scenario():
        clock = FakeClock()
        core = Core(LocalPhysical(MemoryBackend()), clock, engines={})
        init = await core.initialize({"secret_shares": 1, "secret_threshold": 1})
        await core.unseal(bytes.fromhex(init["keys"][0]))
        _, parent = await core.tokens.create_root_token()
        assert await core.maintenance_pass() == 0
        before = core.token_count
        short = await core.tokens.create(TokenEntry(policies=["default"], path="auth/token/create",
                                                    creation_ttl=60, lease_ttl=60))
        await core.maintenance_pass()
        assert core.token_count == before + 1 and await core.tokens.lookup(short) is not None
        clock.advance(61)
        assert await core.maintenance_pass() == 1
        return core.token_count == before and await core.tokens.lookup(short) is None

    assert asyncio.run(scenario())


class Standby(Standalone):
    """A node that is not active: the expiration manager must not run here."""

    enabled = True

    def __init__(self):
        self.active = False

    def is_active(self) -> bool:
        return self.active


def test_expiration_runs_on_the_active_node_only_and_moves_with_it():
    async def scenario():
        clock, ha = FakeClock(), Standby()
        core = Core(LocalPhysical(MemoryBackend()), clock, engines={}, ha=ha)
        init = await core.initialize({"secret_shares": 1, "secret_threshold": 1})
        await core.unseal(bytes.fromhex(init["keys"][0]))
        short = await core.tokens.create(TokenEntry(policies=["default"], path="auth/token/create",
                                                    creation_ttl=60, lease_ttl=60))
        clock.advance(61)
        stored = await core.physical.list("sys/token/id/")
        assert await core.maintenance_pass() == 0  # a standby revokes nothing: revoking writes
        assert await core.physical.list("sys/token/id/") == stored and await core.tokens.lookup(short) is None
        ha.active = True  # leadership moved here
        assert await core.maintenance_pass() == 1
        return len(await core.physical.list("sys/token/id/")) == len(stored) - 1

    assert asyncio.run(scenario())
