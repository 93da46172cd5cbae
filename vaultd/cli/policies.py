"""`vaultd policy write|read|list|delete`: ACL policies at sys/policies/acl/<name>. Names are lower-cased, as
the Vault CLI does; a policy's text is HCL or JSON, from a file or (`-`) stdin."""

from . import output
from .command import Command, Context, read_file_argument
from .errors import NotFound


def _name(context: Context) -> str:
    return context.args[0].strip().lower()


def write(context: Context) -> int:
    name = _name(context)
    text = read_file_argument(context, context.args[1], "policy")
    with context.doing("uploading policy"):
        reply = context.client.write(f"sys/policies/acl/{name}", {"policy": text})
    context.warn(output.warnings_text(reply))
    context.say(f"Success! Uploaded policy: {name}")
    return 0


def read(context: Context) -> int:
    name = _name(context)
    with context.doing(f"reading policy named {name}"):
        reply = context.client.read(f"sys/policies/acl/{name}")
    data = (reply or {}).get("data") or {}
    if reply is None or "policy" not in data:
        raise NotFound(f"No policy named: {name}")
    context.say(output.to_json(data) if context.json else data["policy"].rstrip("\n"))
    return 0


def list_names(context: Context) -> int:
    with context.doing("listing policies"):
        reply = context.client.list("sys/policies/acl")
    names = ((reply or {}).get("data") or {}).get("keys") or []
    context.say(output.to_json(names) if context.json else "\n".join(names))
    return 0


def delete(context: Context) -> int:
    name = _name(context)
    with context.doing(f"deleting {name}"):
        context.client.delete(f"sys/policies/acl/{name}")
    context.say(f"Success! Deleted policy: {name}")
    return 0


commands = [
    Command("policy write", "NAME PATH", "Upload a policy from a file, or from stdin when PATH is -.", write,
            arity=(2, 2)),
    Command("policy read", "NAME", "Print a policy's text.", read, arity=(1, 1)),
    Command("policy list", "", "List the policy names.", list_names),
    Command("policy delete", "NAME", "Delete a policy; tokens holding it lose its grants at once.", delete,
            arity=(1, 1)),
]
