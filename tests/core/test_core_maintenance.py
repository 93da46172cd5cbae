"""The core's maintenance pass, on a fake clock: it revokes expired tokens and counts the rest."""

import asyncio

from storage import MemoryBackend
from vaultd.clock import FakeClock
from vaultd.core.core import Core
from vaultd.core.physical import LocalPhysical


def test_the_maintenance_pass_revokes_expired_tokens_and_counts_the_rest():
    async def scenario():
        clock = FakeClock()
        core = Core(LocalPhysical(MemoryBackend()), clock, engines={})
        init = await core.initialize({"secret_shares": 1, "secret_threshold": 1})
        await core.unseal(bytes.fromhex(init["keys"][0]))
        _, parent = await core.tokens.create_root_token()
        assert await core.maintenance_pass() == 0
        before = core.token_count
        from vaultd.core.tokens import TokenEntry

        short = await core.tokens.create(TokenEntry(policies=["default"], path="auth/token/create",
                                                    creation_ttl=60, lease_ttl=60))
        await core.maintenance_pass()
        assert core.token_count == before + 1 and await core.tokens.lookup(short) is not None
        clock.advance(61)
        assert await core.maintenance_pass() == 1
        return core.token_count == before and await core.tokens.lookup(short) is None

    assert asyncio.run(scenario())
