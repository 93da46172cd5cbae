"""sys/leases and sys/wrapping: look up, renew and revoke leases; wrap, unwrap, look up and rewrap responses."""

from ..sdk import errors
from ..sdk.path import Field, FieldType, Path
from ..sdk.request import Operation, Response

_lease_fields = {
    "lease_id": Field(FieldType.STRING),
    "url_lease_id": Field(FieldType.STRING),
    "prefix": Field(FieldType.STRING),
    "increment": Field(FieldType.DURATION, default=0),
    "sync": Field(FieldType.BOOL, default=True),
}


def lease_paths(core) -> list[Path]:
    leases = lambda: core.leases  # noqa: E731 - rebuilt at every unseal

    def lease_id(fields) -> str:
        return fields.get("lease_id") or fields.get("url_lease_id") or ""

    async def lookup(request, fields):
        return Response(data=await leases().lookup(lease_id(fields)))

    async def list_leases(request, fields):
        keys = await leases().list(fields.get("prefix") or "")
        if not keys:
            raise errors.NotFound()
        return Response(data={"keys": keys})

    async def renew(request, fields):
        await leases().renew(lease_id(fields))
        return None

    async def revoke(request, fields):
        await leases().revoke(lease_id(fields))
        return None

    async def revoke_prefix(request, fields):
        await leases().revoke_prefix(fields.get("prefix") or "")
        return None

    return [
        Path(r"leases/lookup/?", _lease_fields, {Operation.UPDATE: lookup}, help="look up a lease"),
        Path(r"leases/lookup/(?P<prefix>.+)", _lease_fields, {Operation.LIST: list_leases}, help="list leases"),
        Path(r"(leases/)?renew(/(?P<url_lease_id>.+))?", _lease_fields, {Operation.UPDATE: renew},
             help="renew a lease"),
        Path(r"(leases/)?revoke(/(?P<url_lease_id>.+))?", _lease_fields, {Operation.UPDATE: revoke},
             help="revoke a lease"),
        Path(r"(leases/)?revoke-(prefix|force)/(?P<prefix>.+)", _lease_fields, {Operation.UPDATE: revoke_prefix},
             help="revoke every lease under a prefix"),
    ]


def wrapping_paths(core) -> list[Path]:
    fields = {"token": Field(FieldType.STRING)}

    def target(request, fields) -> tuple[str, bool]:
        """The wrapping token: from the body, else the caller's own token (whose one use is in flight)."""
        given = fields.get("token")
        return (given, False) if given else (request.headers.get("x-vault-token", ""), True)

    async def wrap(request, fields):
        if not request.headers.get("x-vault-wrap-ttl"):
            raise errors.InvalidRequest("endpoint requires response wrapping to be used")
        return Response(data=dict(fields.raw))

    async def unwrap(request, fields):
        return await core.wrapping.unwrap(*target(request, fields))

    async def lookup(request, fields):
        return Response(data=await core.wrapping.lookup(target(request, fields)[0]))

    async def rewrap(request, fields):
        return Response(data={}, wrap_info=await core.wrapping.rewrap(*target(request, fields)))

    return [
        Path("wrapping/wrap", {}, {Operation.UPDATE: wrap}, help="wrap the request body"),
        Path("wrapping/unwrap", fields, {Operation.UPDATE: unwrap}, help="unwrap a wrapped response"),
        Path("wrapping/lookup", fields, {Operation.UPDATE: lookup, Operation.READ: lookup}, help="wrapping info"),
        Path("wrapping/rewrap", fields, {Operation.UPDATE: rewrap}, help="re-wrap under a new token"),
    ]
