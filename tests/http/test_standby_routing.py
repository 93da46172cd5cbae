"""The standby middleware on its own (vaultd/http/standby.py), with a fake HA and a stub active node: which
refusals a standby answers itself and which it sends to the active node. The cluster tests run the real thing."""

import asyncio
import types

import aiohttp
from aiohttp import web

from vaultd.http.common import CORE
from vaultd.http.errors import error_response
from vaultd.http.standby import install_standby
from vaultd.sdk.errors import CheckAndSetMismatch, InvalidRequest, VaultError

from .conftest import free_port


class StandbyHa:
    enabled, forwarding = True, "forward"

    def __init__(self, leader: str):
        self.leader = leader

    def is_active(self) -> bool:
        return False

    def is_performance_standby(self) -> bool:
        return True

    def leader_api_addr(self) -> str:
        return self.leader

    async def wait_for_leader(self) -> str:
        return self.leader

    async def wait_for_index(self, index: int) -> int:
        return index


@web.middleware
async def errors_as_vault_does(request, handler):
    try:
        return await handler(request)
    except VaultError as error:
        return error_response(400, error.messages)


async def refuse(request: web.Request) -> web.Response:
    if request.method == "POST":
        raise CheckAndSetMismatch("check-and-set parameter did not match the current version")
    raise InvalidRequest("bad query")


async def serve(active, middlewares: list) -> tuple[list[web.AppRunner], int]:
    """A stub active node answering with `active`, and a standby (our middleware, the `refuse` handler) in front
    of it; returns the runners to clean up and the standby's port."""
    active_app = web.Application()
    active_app.router.add_route("*", "/{path:.*}", active)
    active_port, standby_port = free_port(), free_port()
    standby_app = web.Application(middlewares=middlewares)
    standby_app[CORE] = types.SimpleNamespace(
        ha=StandbyHa(f"http://127.0.0.1:{active_port}"), barrier=types.SimpleNamespace(sealed=False),
        node=types.SimpleNamespace(api_addr=f"http://127.0.0.1:{standby_port}"))
    install_standby(standby_app, f"http://127.0.0.1:{standby_port}")
    standby_app.router.add_route("*", "/v1/{path:.*}", refuse)
    runners = [web.AppRunner(active_app), web.AppRunner(standby_app)]
    for runner, port in zip(runners, (active_port, standby_port), strict=True):
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    return runners, standby_port


async def scenario() -> dict:
    seen = []

    async def active(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, await request.read()))
        return web.json_response({"data": {"version": 12}})

    runners, standby_port = await serve(active, [errors_as_vault_does])
    try:
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.1:{standby_port}/v1/secret/data/x"
            async with client.post(url, json={"options": {"cas": 11}, "data": {"v": 1}}) as write:
                written = (write.status, await write.json())
            async with client.get(url) as read:
                refused = (read.status, await read.json())
    finally:
        for runner in runners:
            await runner.cleanup()
    return {"written": written, "refused": refused, "seen": seen}


def test_a_write_refused_from_stale_state_goes_to_the_active_node_and_a_read_refusal_does_not():
    outcome = asyncio.run(scenario())
    # The standby's check-and-set failed against its own (possibly old) version: the active node decides.
    assert outcome["written"] == (200, {"data": {"version": 12}})
    assert outcome["seen"] == [("POST", "/v1/secret/data/x", b'{"options": {"cas": 11}, "data": {"v": 1}}')]
    assert outcome["refused"] == (400, {"errors": ["bad query"]})  # a read's own refusal is answered here


async def client_leaves_mid_body() -> tuple[list, list]:
    """A POST whose client closes the connection before its declared body arrived, sent to a standby."""
    seen, raised = [], []

    async def active(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({})

    @web.middleware
    async def record(request, handler):
        try:
            return await handler(request)
        except BaseException as error:
            raised.append(error)
            raise

    runners, standby_port = await serve(active, [errors_as_vault_does, record])  # record sees what standby raised
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", standby_port)
        writer.write(b"POST /v1/secret/data/x HTTP/1.1\r\nHost: standby\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"data\": ")
        await writer.drain()
        writer.close()
        for _ in range(500):  # bounded: the standby notices the closed connection within milliseconds
            if raised:
                break
            await asyncio.sleep(0.01)
    finally:
        for runner in runners:
            await runner.cleanup()
    return seen, raised


def test_a_client_that_leaves_mid_body_is_not_forwarded_and_is_no_internal_error():
    seen, raised = asyncio.run(client_leaves_mid_body())
    assert seen == []  # nothing reached the active node
    assert [type(error) for error in raised] == [InvalidRequest]  # a 400, not a ConnectionResetError (a 500)
