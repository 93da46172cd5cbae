"""Runs tests/core/testdata/unseal.txt: initialising the Shamir seal and unseal progress, against a real
Barrier over the storage engine's MemoryBackend, with seeded randomness so the shares replay.

Commands: `init SHARES THRESHOLD`, `unseal I` (submit share I from the last init), `unseal-wrong` (a share
of the right length that belongs to no init), `reset`, `seal`, `status`.
"""

import asyncio
import pathlib
import random

import pytest

from storage import MemoryBackend
from vaultd.clock import FakeClock
from vaultd.core.barrier import Barrier
from vaultd.core.physical import LocalPhysical
from vaultd.core.seal import ShamirSeal
from vaultd.sdk.errors import VaultError

from .. import datadriven

testdata = pathlib.Path(__file__).parent / "testdata"


class SealScenario:
    def __init__(self) -> None:
        rng = random.Random(5)
        self.barrier = Barrier(LocalPhysical(MemoryBackend()), FakeClock())
        self.seal = ShamirSeal(self.barrier, randbytes=rng.randbytes)
        self.shares: list[bytes] = []
        self.rng = rng

    def handle(self, command: str) -> str:
        name, *arguments = command.split()
        try:
            return asyncio.run(getattr(self, "do_" + name.replace("-", "_"))(*arguments))
        except VaultError as error:
            return f"error: {type(error).__name__}: {'; '.join(error.messages)}"

    async def do_init(self, shares: str, threshold: str) -> str:
        self.shares = await self.seal.initialize(int(shares), int(threshold))
        lengths = sorted({len(share) for share in self.shares})
        return f"shares={len(self.shares)} bytes={lengths} sealed={self.barrier.sealed}"

    async def do_unseal(self, index: str) -> str:
        await self.seal.submit(self.shares[int(index)])
        return await self.do_status()

    async def do_unseal_wrong(self) -> str:
        await self.seal.submit(self.rng.randbytes(len(self.shares[0])))
        return await self.do_status()

    async def do_reset(self) -> str:
        self.seal.progress.reset()
        return await self.do_status()

    async def do_seal(self) -> str:
        self.barrier.seal()
        return await self.do_status()

    async def do_status(self) -> str:
        config = self.seal.config
        threshold = config.secret_threshold if config else 0
        return f"sealed={self.barrier.sealed} progress={self.seal.progress.progress}/{threshold}"


@pytest.mark.parametrize("path", sorted(testdata.glob("unseal*.txt")), ids=lambda path: path.name)
def test_scenario(path):
    datadriven.run(path, SealScenario().handle)
