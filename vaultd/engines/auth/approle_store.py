"""AppRole's records and storage: the Role and SecretID records, their keys (HMACs under the mount's salt),
parsing of role and secret-id settings, and the per-key locks. The paths and login are in approle.py."""

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import hmac
import json
import math
import uuid

from vaultd.sdk import errors
from vaultd.sdk.path import FieldData
from vaultd.sdk.request import Request, Response
from vaultd.sdk.storage import StorageView

from . import token_fields as tokens

hmac_input_bytes_max = 4096  # Vault's maxHmacInputLength, for role names and custom secret-ids
salt_bytes = 32
# Vault caps a secret-id's TTL at the mount's max lease TTL; an engine does not see mount tuning, so this is
# the system default (768h).
secret_id_ttl_max_seconds = 768 * 3600
nanoseconds_per_second = 1_000_000_000
invalid_credentials = "invalid role or secret ID"

assert salt_bytes >= 32 and hmac_input_bytes_max > 0 and secret_id_ttl_max_seconds > 0


@dataclasses.dataclass
class Role:
    name: str
    role_id: str = ""
    bind_secret_id: bool = True
    secret_id_bound_cidrs: list[str] | None = None  # None until set: Vault reads it back as null
    secret_id_num_uses: int = 0
    secret_id_ttl: int = 0
    local_secret_ids: bool = False
    token: tokens.TokenSettings = dataclasses.field(default_factory=tokens.TokenSettings)

    def wire(self) -> dict:
        """A role read, as Vault's pathRoleRead answers it: no role_id, durations in seconds."""
        fields = ("bind_secret_id", "local_secret_ids", "secret_id_bound_cidrs", "secret_id_num_uses", "secret_id_ttl")
        data = {name: getattr(self, name) for name in fields}
        return dict(sorted({**data, **tokens.token_data(self.token)}.items()))

    @classmethod
    def decode(cls, raw: bytes) -> "Role":
        record = json.loads(raw)
        return cls(**{**record, "token": tokens.TokenSettings(**record["token"])})


@dataclasses.dataclass
class SecretID:
    secret_id_hmac: str
    secret_id_accessor: str
    secret_id_num_uses: int  # logins left; 0 is unlimited
    secret_id_ttl: int  # seconds, as asked
    creation_time: int  # nanoseconds since the epoch, as are the two below
    expiration_time: int  # 0: never
    last_updated_time: int
    metadata: dict[str, str]
    cidr_list: list[str]
    token_bound_cidrs: list[str]

    def expired(self, now: int) -> bool:
        return self.expiration_time != 0 and now >= self.expiration_time

    def wire(self) -> dict:
        """A secret-id lookup (Vault's ToResponseData), times as Go prints a time.Time."""
        data = {name: value for name, value in dataclasses.asdict(self).items() if name != "secret_id_hmac"}
        times = ("creation_time", "expiration_time", "last_updated_time")
        return dict(sorted({**data, **{name: rfc3339(data[name]) for name in times}}.items()))


def updated_role(current: Role | None, name: str, fields: FieldData) -> tuple[Role, list[str]]:
    """`current` (None: a new role) with the request applied, checked as Vault's pathRoleCreateUpdate does.
    Pure: it raises InvalidRequest before anything is written."""
    creating = current is None
    role = Role(name=name) if creating else Role.decode(_encode(dataclasses.asdict(current)))
    role.token, warnings = tokens.parse_token_settings(fields, role.token)
    if fields.provided("local_secret_ids"):
        if not creating:
            raise errors.InvalidRequest("local_secret_ids can only be modified during role creation")
        role.local_secret_ids = fields.get("local_secret_ids")
    role.role_id = fields.get("role_id") if fields.provided("role_id") else role.role_id or str(uuid.uuid4())
    if not role.role_id:
        raise errors.InvalidRequest("invalid role_id supplied, or failed to generate a role_id")
    if fields.provided("bind_secret_id"):
        role.bind_secret_id = fields.get("bind_secret_id")
    for cidrs in ("secret_id_bound_cidrs", "bound_cidr_list"):
        if fields.provided(cidrs):
            role.secret_id_bound_cidrs = tokens.cidr_blocks(fields.get(cidrs), "invalid CIDR blocks")
            break
    for count in ("secret_id_num_uses", "secret_id_ttl"):
        if fields.provided(count):
            setattr(role, count, fields.get(count))
        if getattr(role, count) < 0:
            raise errors.InvalidRequest(f"{count} cannot be negative")
    if not (role.bind_secret_id or role.secret_id_bound_cidrs or role.token.token_bound_cidrs):
        raise errors.InvalidRequest("at least one constraint should be enabled on the role")
    return role, warnings


def new_secret_id(role: Role, fields: FieldData, secret_hmac: str, now: int) -> SecretID:
    """A secret-id of `role` as the request asks (Vault's handleRoleSecretIDCommon). Raises InvalidRequest."""
    if not role.bind_secret_id:
        raise errors.InvalidRequest("bind_secret_id is not set on the role")
    cidrs = tokens.cidr_blocks(fields.get("cidr_list") or [], "failed to validate CIDR blocks")
    token_cidrs = tokens.cidr_blocks(fields.get("token_bound_cidrs") or [], "failed to validate token CIDR blocks")
    for blocks, outer in ((cidrs, role.secret_id_bound_cidrs or []), (token_cidrs, role.token.token_bound_cidrs)):
        if not tokens.within(blocks, outer):
            raise errors.InvalidRequest(f"failed to verify subset relationship between CIDR blocks on the role "
                                        f"{outer} and CIDR blocks on the secret ID {blocks}")
    num_uses = _override(fields, "num_uses", role.secret_id_num_uses, "cannot be higher than")
    ttl = _override(fields, "ttl", role.secret_id_ttl, "cannot be longer than")
    lifetime = min(ttl, secret_id_ttl_max_seconds) * nanoseconds_per_second
    return SecretID(
        secret_id_hmac=secret_hmac, secret_id_accessor=str(uuid.uuid4()), secret_id_num_uses=num_uses,
        secret_id_ttl=ttl, creation_time=now, expiration_time=now + lifetime if lifetime else 0,
        last_updated_time=now, metadata=parse_metadata(fields.get("metadata") or ""), cidr_list=cidrs,
        token_bound_cidrs=token_cidrs,
    )


def _override(fields: FieldData, name: str, role_value: int, problem: str) -> int:
    """A secret-id's num_uses or ttl: the role's unless given, and never unlimited (0) or above a role's limit."""
    if not fields.provided(name):
        return role_value
    value = fields.get(name)
    if value < 0:
        raise errors.InvalidRequest(f"{name} cannot be negative")
    if role_value > 0 and (value == 0 or value > role_value):
        raise errors.InvalidRequest(f"{name} {problem} the role's secret_id_{name}")
    return value


def parse_metadata(text: str) -> dict[str, str]:
    """Vault's strutil.ParseArbitraryKeyValues: a JSON object of strings, maybe base64-encoded, else
    "k1=v1,k2=v2"."""
    text = text.strip()
    if not text:
        return {}
    with contextlib.suppress(ValueError):  # binascii.Error and UnicodeDecodeError are ValueErrors
        text = base64.b64decode(text, validate=True).decode()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not (isinstance(parsed, dict) and all(isinstance(value, str) for value in parsed.values())):
        parsed = {}
        for pair in filter(str.strip, text.split(",")):
            shards = [shard.strip() for shard in pair.split("=")]
            if len(shards) != 2 or not all(shards):
                raise errors.InvalidRequest("failed to parse metadata: invalid <key,value> format")
            parsed[shards[0]] = shards[1]
    for key, value in parsed.items():
        if key and not value:
            raise errors.InvalidRequest(f"failed to parse metadata: invalid value for key {json.dumps(key)}")
    return parsed


def _check_source(request: Request, blocks: list[str] | None, subject: str) -> None:
    allowed = tokens.source_allowed(request, blocks) if blocks else True
    if allowed is None:
        raise errors.InternalError("failed to get connection information")  # fails closed, as Vault does
    if not allowed:
        address = json.dumps(tokens.remote_address(request))
        raise errors.InvalidRequest(f"source address {address} unauthorized by CIDR restrictions on the {subject}")


def _role_of(fields: FieldData) -> str:
    return fields.get("role_name").lower()


def _required(fields: FieldData, name: str) -> str:
    value = fields.get(name) or ""
    if not value:
        raise errors.InvalidRequest(f"missing {name}")
    return value


async def _role_and_salt(request: Request, fields: FieldData) -> tuple[str, bytes]:
    name = _role_of(fields)
    if await _load_role(request.storage, name) is None:
        raise errors.InvalidRequest(f"role {json.dumps(name)} does not exist")
    return name, await _salt_of(request.storage)


async def _locate(request: Request, fields: FieldData, by_accessor: bool) -> tuple[str, bytes, str]:
    """The role, salt and storage key of the secret-id a lookup or destroy names. An accessor of another
    role's secret-id names a key of this role's that holds nothing."""
    wanted = _required(fields, "secret_id_accessor" if by_accessor else "secret_id")
    name, salt = await _role_and_salt(request, fields)
    if not by_accessor:
        return name, salt, _secret_key(salt, name, _hmac(salt, wanted))
    pointer = await request.storage.get(_accessor_key(salt, wanted))
    if pointer is None:
        raise errors.NotFound(f"failed to find accessor entry for secret_id_accessor: {json.dumps(wanted)}")
    return name, salt, _secret_key(salt, name, json.loads(pointer)["secret_id_hmac"])


async def _delete_secret_ids(storage: StorageView, salt: bytes, name: str, now: int | None) -> None:
    """Delete the role's secret-ids: all of them, or (given `now`) the expired ones. Hold the role's lock."""
    prefix = _secret_key(salt, name, "")
    for child in await storage.list(prefix):
        entry = await _load_secret(storage, prefix + child)
        if entry is not None and (now is None or entry.expired(now)):
            await _delete_secret_id(storage, salt, prefix + child, entry)


async def _delete_secret_id(storage: StorageView, salt: bytes, key: str, entry: SecretID) -> None:
    await storage.delete(_accessor_key(salt, entry.secret_id_accessor))
    await storage.delete(key)


async def _load_role(storage: StorageView, name: str) -> Role | None:
    raw = await storage.get("role/" + name)
    return None if raw is None else Role.decode(raw)


async def _load_secret(storage: StorageView, key: str) -> SecretID | None:
    raw = await storage.get(key)
    return None if raw is None else SecretID(**json.loads(raw))


async def _stored_salt(storage: StorageView) -> bytes | None:
    raw = await storage.get("salt")
    return None if raw is None else bytes.fromhex(raw.decode())


async def _salt_of(storage: StorageView) -> bytes:
    """The salt of a mount with a role: one is stored before the first role."""
    salt = await _stored_salt(storage)
    if salt is None:
        raise errors.InternalError("the mount's salt is missing")
    return salt


def _hmac(salt: bytes, value: str) -> str:
    return hmac.new(salt, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _index_key(salt: bytes, role_id: str) -> str:
    return "role_id/" + _hmac(salt, role_id)


def _secret_key(salt: bytes, name: str, secret_hmac: str) -> str:
    return f"secret_id/{_hmac(salt, name)}/{secret_hmac}"


def _accessor_key(salt: bytes, accessor: str) -> str:
    return "accessor/" + _hmac(salt, accessor)


def _encode(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _listing(keys: list[str]) -> Response:
    if not keys:
        raise errors.NotFound()
    return Response(data={"keys": keys})


def nanoseconds(unix_seconds: float) -> int:
    """`Request.received_at` as integer nanoseconds; the fraction is split off first so it rounds exactly."""
    whole = math.floor(unix_seconds)
    return whole * nanoseconds_per_second + round((unix_seconds - whole) * nanoseconds_per_second)


def rfc3339(stamp: int) -> str:
    """Go's JSON for a time.Time in UTC (RFC 3339, trailing zeros of the fraction dropped); 0 is Go's zero
    time, which Vault shows as the expiration_time of a secret-id that never expires."""
    if not stamp:
        return "0001-01-01T00:00:00Z"
    seconds, fraction = divmod(stamp, nanoseconds_per_second)
    text = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + ("." + f"{fraction:09d}".rstrip("0") if fraction else "") + "Z"
