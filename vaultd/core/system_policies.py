"""sys/policy and sys/policies/acl: read, write, delete and list ACL policies."""

from ..sdk import errors
from ..sdk.path import Field, FieldType, Path
from ..sdk.request import Operation, Response

_fields = {"name": Field(FieldType.STRING), "policy": Field(FieldType.STRING), "rules": Field(FieldType.STRING)}


def policy_paths(core) -> list[Path]:
    store = lambda: core.policies  # noqa: E731 - the store is rebuilt at every unseal

    async def list_legacy(request, fields):
        names = await store().names()
        return Response(data={"keys": names + ["root"], "policies": names + ["root"]})

    async def list_acl(request, fields):
        return Response(data={"keys": await store().names() + ["root"]})

    async def read_legacy(request, fields):
        policy = await store().read(fields.get("name"))
        return Response(data={"name": policy.name, "rules": policy.raw})

    async def read_acl(request, fields):
        policy = await store().read(fields.get("name"))
        return Response(data={"name": policy.name, "policy": policy.raw})

    async def write(request, fields):
        text = fields.get("policy") or fields.get("rules")
        if not text:
            raise errors.InvalidRequest("'policy' parameter not supplied or empty")
        await store().put(fields.get("name"), text)
        return None

    async def delete(request, fields):
        await store().delete(fields.get("name"))
        return None

    return [
        Path("policy", {}, {Operation.READ: list_legacy}, help="list policies"),
        Path(r"policy/(?P<name>.+)", _fields,
             {Operation.READ: read_legacy, Operation.UPDATE: write, Operation.DELETE: delete}, help="a policy"),
        Path(r"policies/acl/?", {}, {Operation.LIST: list_acl, Operation.READ: list_acl}, help="list ACL policies"),
        Path(r"policies/acl/(?P<name>.+)", _fields,
             {Operation.READ: read_acl, Operation.UPDATE: write, Operation.DELETE: delete}, help="an ACL policy"),
    ]
