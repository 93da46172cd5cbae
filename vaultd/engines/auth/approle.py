"""AppRole (Vault's builtin/credential/approle): a machine logs in with its role's role_id and a secret_id.

Paths: role/ (LIST), role/<name>, role/<name>/role-id, role/<name>/secret-id (generate; LIST of accessors),
role/<name>/custom-secret-id, role/<name>/secret-id/{lookup,destroy}, role/<name>/secret-id-accessor/{lookup,
destroy}, role/<name>/<property> (Vault's one-field endpoints), tidy/secret-id and login.

Storage layout (values are UTF-8 JSON; h(x) is the hex HMAC-SHA256 of x keyed by the mount's salt):

    salt                                  the mount's HMAC key, 32 random bytes in hex; made with the first role
    role/<name>                           a Role; names are lower-cased, as Vault does for new roles
    role_id/<h(role_id)>                  {"name": <role name>}: the login index
    secret_id/<h(name)>/<h(secret_id)>    a SecretID: accessor, uses left, ttl, times, metadata, CIDRs
    accessor/<h(accessor)>                {"secret_id_hmac": <h(secret_id)>}

A secret_id is never stored, only its HMAC; a login recomputes it and compares in constant time. A secret-id
past its expiration_time (against `request.received_at`) counts as gone; tidy/secret-id deletes it.
Locks: a role's name guards its record and its secret-ids (writes, issue, destroy, the uses a login spends);
":salt" and ":role_ids" are only taken inside a role's lock, never around one, so no two requests deadlock.
"""

import dataclasses
import functools
import hmac
import json
import os
import uuid

from vaultd.sdk import errors
from vaultd.sdk.backend import Backend, parse_fields
from vaultd.sdk.locks import KeyLocks
from vaultd.sdk.path import Field, FieldData, FieldType, Path
from vaultd.sdk.request import Operation, Request, Response
from vaultd.sdk.storage import StorageView

from . import token_fields as tokens
from .approle_store import (  # noqa: F401 - the records and storage helpers of this backend
    Role,
    SecretID,
    _accessor_key,
    _check_source,
    _delete_secret_id,
    _delete_secret_ids,
    _encode,
    _hmac,
    _index_key,
    _listing,
    _load_role,
    _load_secret,
    _locate,
    _required,
    _role_and_salt,
    _role_of,
    _salt_of,
    _secret_key,
    _stored_salt,
    hmac_input_bytes_max,
    invalid_credentials,
    nanoseconds,
    nanoseconds_per_second,
    new_secret_id,
    salt_bytes,
    secret_id_ttl_max_seconds,
    updated_role,
)

_name = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"  # Vault's GenericNameRegex; Go's \w is ASCII

_role_name = {"role_name": Field(FieldType.STRING, "Name of the role.", required=True)}
_role_fields = {
    **_role_name,
    "bind_secret_id": Field(FieldType.BOOL, "Require a secret_id at login.", True),
    "bound_cidr_list": Field(FieldType.STRING_LIST, 'Use "secret_id_bound_cidrs" instead.'),
    "secret_id_bound_cidrs": Field(FieldType.STRING_LIST, "CIDR blocks that may log in."),
    "secret_id_num_uses": Field(FieldType.INT, "Logins a secret-id allows; 0 is unlimited."),
    "secret_id_ttl": Field(FieldType.DURATION, "Lifetime of a secret-id; 0 is unlimited."),
    "local_secret_ids": Field(FieldType.BOOL, "Cluster-local secret-ids; only settable at creation."),
    "role_id": Field(FieldType.STRING, "The role_id; a random UUID when not given at creation."),
    **tokens.token_fields("policies", "period"),
}
_secret_id_fields = {
    **_role_name,
    "metadata": Field(FieldType.STRING, "A JSON object of strings, tied to the secret-id."),
    "cidr_list": Field(FieldType.STRING_LIST, "CIDR blocks the secret-id may be used from."),
    "token_bound_cidrs": Field(FieldType.STRING_LIST, "CIDR blocks the issued tokens may be used from."),
    "num_uses": Field(FieldType.INT, "Overrides the role's secret_id_num_uses; may not exceed it."),
    "ttl": Field(FieldType.DURATION, "Overrides the role's secret_id_ttl; may not exceed it."),
}
_secret_id = {"secret_id": Field(FieldType.STRING, "The secret-id.")}
_accessor = {"secret_id_accessor": Field(FieldType.STRING, "The accessor of a secret-id.")}
# Vault's one-field endpoints, role/<name>/<property>: the fields each reads and writes (the first is the one
# it requires); a DELETE writes back `_reset`, and local-secret-ids has none.
_properties = {
    "policies": ("token_policies", "policies"),
    "period": ("token_period", "period"),
    **{name: (name.replace("-", "_"),) for name in (
        "bind-secret-id", "secret-id-bound-cidrs", "secret-id-num-uses", "secret-id-ttl", "token-bound-cidrs",
        "token-max-ttl", "token-num-uses", "token-ttl", "local-secret-ids",
    )},
}
_reset = {"token_policies": [], "token_period": 0, "bind_secret_id": True, "secret_id_bound_cidrs": [],
          "secret_id_num_uses": 0, "secret_id_ttl": 0, "token_bound_cidrs": [], "token_max_ttl": 0,
          "token_num_uses": 0, "token_ttl": 0}

assert all(set(names) <= _role_fields.keys() for names in _properties.values())
assert {names[0] for names in _properties.values()} - _reset.keys() == {"local_secret_ids"}


def approle_backend() -> Backend:
    """A fresh backend with its own locks: build one per mount."""
    return _AppRole().backend()


class _AppRole:
    def __init__(self) -> None:
        self.locks = KeyLocks()

    def backend(self) -> Backend:
        read, create, update, delete, list_ = (
            Operation.READ, Operation.CREATE, Operation.UPDATE, Operation.DELETE, Operation.LIST,
        )
        role = f"role/(?P<role_name>{_name})"
        by_secret_id, by_accessor = {**_role_name, **_secret_id}, {**_role_name, **_accessor}
        lookup, destroy = functools.partial(self.lookup, False), functools.partial(self.destroy, False)
        lookup_accessor, destroy_accessor = functools.partial(self.lookup, True), functools.partial(self.destroy, True)
        return Backend([
            Path(r"role/?", {}, {list_: self.list_roles}, help="List the roles."),
            Path(role, _role_fields,
                 {read: self.read_role, create: self.write_role, update: self.write_role, delete: self.delete_role},
                 existence_check=self.role_exists, help="Create, read, update or delete a role."),
            Path(role + "/role-id", {**_role_name, "role_id": _role_fields["role_id"]},
                 {read: self.read_role_id, update: self.write_role_id}, help="Read or set a role's role_id."),
            Path(role + "/secret-id/?", _secret_id_fields, {update: self.generate, list_: self.list_secret_ids},
                 help="Generate a secret-id, or list the accessors of the role's secret-ids."),
            Path(role + "/custom-secret-id", {**_secret_id_fields, **_secret_id}, {update: self.custom},
                 help="Register a secret-id of the caller's choosing."),
            Path(role + "/secret-id/lookup/?", by_secret_id, {update: lookup}, help="Read a secret-id."),
            Path(role + "/secret-id/destroy/?", by_secret_id, {update: destroy, delete: destroy},
                 help="Delete a secret-id."),
            Path(role + "/secret-id-accessor/lookup/?", by_accessor, {update: lookup_accessor},
                 help="Read a secret-id by its accessor."),
            Path(role + "/secret-id-accessor/destroy/?", by_accessor,
                 {update: destroy_accessor, delete: destroy_accessor}, help="Delete a secret-id by its accessor."),
            Path(role + f"/(?P<property>{'|'.join(_properties)})",
                 {**_role_fields, "property": Field(FieldType.STRING, "One property of the role.")},
                 {read: self.read_property, update: self.write_property, delete: self.reset_property},
                 help="Read, set or reset one property of a role."),
            Path("tidy/secret-id", {}, {update: self.tidy}, help="Delete the expired secret-ids."),
            Path("login", {"role_id": _role_fields["role_id"], **_secret_id}, {update: self.login},
                 help="Log in with a role_id and a secret_id."),
        ], help="AppRole: machines log in with a role_id and a secret_id.")

    async def role_exists(self, request: Request, fields: FieldData) -> bool:
        return await _load_role(request.storage, _role_of(fields)) is not None

    async def list_roles(self, request: Request, fields: FieldData) -> Response:
        return _listing(await request.storage.list("role/"))

    async def read_role(self, request: Request, fields: FieldData) -> Response | None:
        role = await _load_role(request.storage, _role_of(fields))
        return None if role is None else Response(data=role.wire())

    async def write_role(self, request: Request, fields: FieldData) -> Response | None:
        if len(_role_of(fields).encode()) > hmac_input_bytes_max:
            raise errors.InvalidRequest(f"role_name is longer than maximum of {hmac_input_bytes_max} bytes")
        return await self._update_role(request, fields, may_create=True)

    async def delete_role(self, request: Request, fields: FieldData) -> None:
        """The role, its secret-ids and its login index; Vault's pathRoleDelete."""
        name, storage = _role_of(fields), request.storage
        async with self.locks.hold(name):
            role = await _load_role(storage, name)
            if role is not None:
                salt = await _salt_of(storage)
                await _delete_secret_ids(storage, salt, name, now=None)
                await storage.delete(_index_key(salt, role.role_id))
                await storage.delete("role/" + name)

    async def read_role_id(self, request: Request, fields: FieldData) -> Response | None:
        role = await _load_role(request.storage, _role_of(fields))
        return None if role is None else Response(data={"role_id": role.role_id})

    async def write_role_id(self, request: Request, fields: FieldData) -> Response | None:
        _required(fields, "role_id")
        return await self._update_role(request, fields, may_create=False)

    async def read_property(self, request: Request, fields: FieldData) -> Response | None:
        role = await _load_role(request.storage, _role_of(fields))
        names = _properties[fields.get("property")]
        return None if role is None else Response(data={k: v for k, v in role.wire().items() if k in names})

    async def write_property(self, request: Request, fields: FieldData) -> Response | None:
        names = _properties[fields.get("property")]
        if not any(fields.provided(name) for name in names):
            raise errors.InvalidRequest(f"missing {names[0]}")
        only = parse_fields({name: _role_fields[name] for name in names}, request.data, {})
        return await self._update_role(request, only, may_create=False, name=_role_of(fields))

    async def reset_property(self, request: Request, fields: FieldData) -> Response | None:
        names = _properties[fields.get("property")]
        if names[0] not in _reset:
            raise errors.UnsupportedOperation(f"unsupported operation: delete on {request.path!r}")
        if await _load_role(request.storage, _role_of(fields)) is None:
            return None
        defaults = parse_fields({names[0]: _role_fields[names[0]]}, {names[0]: _reset[names[0]]}, {})
        return await self._update_role(request, defaults, may_create=False, name=_role_of(fields))

    async def _update_role(
        self, request: Request, fields: FieldData, may_create: bool, name: str = ""
    ) -> Response | None:
        """Apply `fields` to the role named by the path (or `name`) under its lock, and store it."""
        name = name or _role_of(fields)
        async with self.locks.hold(name):
            current = await _load_role(request.storage, name)
            if current is None and not may_create:
                raise errors.UnsupportedPath(f"role {json.dumps(name)} does not exist")
            role, warnings = updated_role(current, name, fields)
            await self._save_role(request.storage, role, current.role_id if current else "")
        return Response(warnings=warnings) if warnings else None

    async def _save_role(self, storage: StorageView, role: Role, previous_role_id: str) -> None:
        """Write the role and its login index, refusing a role_id another role holds."""
        async with self.locks.hold(":salt"):
            salt = await _stored_salt(storage)
            if salt is None:
                salt = os.urandom(salt_bytes)
                await storage.put("salt", salt.hex().encode())
        index_key = _index_key(salt, role.role_id)
        async with self.locks.hold(":role_ids"):
            owner = await storage.get(index_key)
            if owner is not None and json.loads(owner)["name"] != role.name:
                raise errors.InvalidRequest("role_id already in use")
            if previous_role_id and previous_role_id != role.role_id:
                await storage.delete(_index_key(salt, previous_role_id))
            await storage.put("role/" + role.name, _encode(dataclasses.asdict(role)))
            await storage.put(index_key, _encode({"name": role.name}))

    async def generate(self, request: Request, fields: FieldData) -> Response:
        return await self._issue(request, fields, str(uuid.uuid4()))

    async def custom(self, request: Request, fields: FieldData) -> Response:
        secret_id = _required(fields, "secret_id")
        if len(secret_id.encode()) > hmac_input_bytes_max:
            raise errors.InvalidRequest(f"secret_id is longer than maximum of {hmac_input_bytes_max} bytes")
        return await self._issue(request, fields, secret_id)

    async def _issue(self, request: Request, fields: FieldData, secret_id: str) -> Response:
        """Store a new secret-id: its accessor's index first, then the entry (Vault's registerSecretIDEntry)."""
        name, storage = _role_of(fields), request.storage
        async with self.locks.hold(name):
            role = await _load_role(storage, name)
            if role is None:
                raise errors.UnsupportedPath(f"role {json.dumps(name)} does not exist")
            salt = await _salt_of(storage)
            entry = new_secret_id(role, fields, _hmac(salt, secret_id), nanoseconds(request.received_at))
            key = _secret_key(salt, name, entry.secret_id_hmac)
            if await storage.get(key) is not None:
                raise errors.InvalidRequest("SecretID is already registered")
            pointer = _encode({"secret_id_hmac": entry.secret_id_hmac})
            await storage.put(_accessor_key(salt, entry.secret_id_accessor), pointer)
            await storage.put(key, _encode(dataclasses.asdict(entry)))
        ttl = min(entry.secret_id_ttl, secret_id_ttl_max_seconds)
        return Response(data={"secret_id": secret_id, "secret_id_accessor": entry.secret_id_accessor,
                              "secret_id_ttl": ttl, "secret_id_num_uses": entry.secret_id_num_uses})

    async def list_secret_ids(self, request: Request, fields: FieldData) -> Response:
        name, salt = await _role_and_salt(request, fields)
        now, prefix = nanoseconds(request.received_at), _secret_key(salt, name, "")
        entries = [await _load_secret(request.storage, prefix + child) for child in await request.storage.list(prefix)]
        return _listing(sorted(entry.secret_id_accessor for entry in entries if entry and not entry.expired(now)))

    async def lookup(self, by_accessor: bool, request: Request, fields: FieldData) -> Response | None:
        _, _, key = await _locate(request, fields, by_accessor)
        entry = await _load_secret(request.storage, key)
        live = entry is not None and not entry.expired(nanoseconds(request.received_at))
        return Response(data=entry.wire()) if live else None

    async def destroy(self, by_accessor: bool, request: Request, fields: FieldData) -> None:
        name, salt, key = await _locate(request, fields, by_accessor)
        async with self.locks.hold(name):
            entry = await _load_secret(request.storage, key)
            if entry is not None:
                await _delete_secret_id(request.storage, salt, key, entry)
            elif by_accessor:
                raise errors.PermissionDenied("invalid secret id accessor")

    async def tidy(self, request: Request, fields: FieldData) -> None:
        """Vault runs this every minute; here an operator (or a scheduler) asks for it."""
        salt, now = await _stored_salt(request.storage), nanoseconds(request.received_at)
        if salt is None:
            return
        for name in await request.storage.list("role/"):
            async with self.locks.hold(name):
                await _delete_secret_ids(request.storage, salt, name, now=now)

    async def login(self, request: Request, fields: FieldData) -> Response:
        """Vault's pathLoginUpdate, except that CIDRs are checked before a use is spent."""
        role_id = (fields.get("role_id") or "").strip()
        if not role_id:
            raise errors.InvalidRequest("missing role_id")
        salt = await _stored_salt(request.storage)
        owner = await request.storage.get(_index_key(salt, role_id)) if salt else None
        role = await _load_role(request.storage, json.loads(owner)["name"]) if owner else None
        if role is None or not hmac.compare_digest(role.role_id.encode(), role_id.encode()):
            raise errors.InvalidRequest(invalid_credentials)
        _check_source(request, role.secret_id_bound_cidrs, "role")
        metadata, token = {}, role.token
        if role.bind_secret_id:
            entry = await self._spend(request, salt, role, (fields.get("secret_id") or "").strip())
            metadata = dict(entry.metadata)
            if entry.token_bound_cidrs:
                token = dataclasses.replace(token, token_bound_cidrs=tokens.addresses(entry.token_bound_cidrs))
        metadata["role_name"] = role.name
        return Response(auth=tokens.auth_spec(token, metadata, tokens.display_name(request, "approle", "")))

    async def _spend(self, request: Request, salt: bytes, role: Role, secret_id: str) -> SecretID:
        """Check the secret-id and spend one of its uses; the last use deletes it."""
        if not secret_id:
            raise errors.InvalidRequest("missing secret_id")
        now, secret_hmac = nanoseconds(request.received_at), _hmac(salt, secret_id)
        key = _secret_key(salt, role.name, secret_hmac)
        async with self.locks.hold(role.name):
            entry = await _load_secret(request.storage, key)
            if entry is None or entry.expired(now) or not hmac.compare_digest(entry.secret_id_hmac, secret_hmac):
                raise errors.InvalidRequest(invalid_credentials)
            _check_source(request, entry.cidr_list, "secret ID")
            if entry.secret_id_num_uses == 1:
                await _delete_secret_id(request.storage, salt, key, entry)
            elif entry.secret_id_num_uses > 1:
                entry.secret_id_num_uses -= 1
                entry.last_updated_time = now
                await request.storage.put(key, _encode(dataclasses.asdict(entry)))
        return entry
