"""The node's maintenance loop (vaultd/app.py `maintain`): a pass cut short because leadership moved is an
ordinary event, logged in one line; any other failure is logged with its traceback; the loop goes on."""

import asyncio
import logging

from vaultd import app, limits
from vaultd.core.ha import StandbyWrite


class _Core:
    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.passes = 0

    async def maintenance_pass(self) -> int:
        self.passes += 1
        outcome = self.outcomes.pop(0) if self.outcomes else 0
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def _run(core: _Core, passes: int) -> None:
    async def main():
        task = asyncio.create_task(app.maintain(core))
        while core.passes < passes:
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_a_pass_cut_short_by_a_leadership_change_is_one_info_line(monkeypatch, caplog):
    monkeypatch.setattr(limits, "maintenance_interval_seconds", 0)
    core = _Core([StandbyWrite("http://127.0.0.2:8200"), 0])
    with caplog.at_level(logging.INFO, logger="vaultd"):
        _run(core, 2)
    lines = [record for record in caplog.records if "maintenance pass" in record.getMessage()]
    assert [(record.levelno, record.exc_info) for record in lines] == [(logging.INFO, None)]
    assert "no longer the active node" in lines[0].getMessage()


def test_any_other_failure_keeps_its_traceback_and_the_loop_goes_on(monkeypatch, caplog):
    monkeypatch.setattr(limits, "maintenance_interval_seconds", 0)
    core = _Core([RuntimeError("disk"), 0])
    with caplog.at_level(logging.INFO, logger="vaultd"):
        _run(core, 2)
    failures = [record for record in caplog.records if "maintenance pass failed" in record.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR and failures[0].exc_info
    assert core.passes >= 2
