"""`vaultd status` and `vaultd operator init|unseal|seal|rotate|key-status`: the seal's life cycle.

`status` exits as Vault's does: 0 unsealed, 2 sealed, 1 when the server cannot say.

An auto seal (PKCS#11) is initialised with recovery keys rather than unseal keys: `operator init` reads
sys/seal-status first and, as Vault's CLI does, defaults -recovery-shares/-recovery-threshold to 5/3 when the
server reports a recovery seal, else -key-shares/-key-threshold. The other pair goes as 0, so the server refuses
a pair its seal does not take. `operator unseal -migrate` sends a share of the old seal during a seal migration.
"""

import contextlib

from . import output
from .command import Command, Context
from .errors import CliError
from .flags import Flag, Values

init_message = """\
Vault initialized with {shares} key shares and a key threshold of {threshold}. Please securely
distribute the key shares printed above. When the Vault is re-sealed, restarted, or stopped, you must
supply at least {threshold} of these keys to unseal it before it can start servicing requests.

Vault does not store the generated root key. Without at least {threshold} keys to reconstruct the root
key, Vault will remain permanently sealed!

It is possible to generate new unseal keys, provided you have a quorum of existing unseal keys shares.
See "vaultd operator rekey" for more information."""

# Wrapped where Vault's 78-column wrapAtLength breaks it for shares and thresholds below 100.
recovery_init_message = """\
Recovery key initialized with {shares} key shares and a key threshold of {threshold}. Please
securely distribute the key shares printed above."""
default_shares, default_threshold = 5, 3  # Vault's CLI defaults, for unseal keys and recovery keys alike


def seal_status_table(seal: dict, leader: dict | None = None) -> str:
    recovery = bool(seal.get("recovery_seal"))
    pairs = [("Seal Type", seal.get("type") or "n/a")]
    if recovery:
        pairs.append(("Recovery Seal Type", seal.get("recovery_seal_type") or "shamir"))
    pairs += [
        ("Initialized", output.go_value(seal.get("initialized"))),
        ("Sealed", output.go_value(seal.get("sealed"))),
        ("Total Recovery Shares" if recovery else "Total Shares", str(seal.get("n", 0))),
        ("Threshold", str(seal.get("t", 0))),
    ]
    if seal.get("sealed"):  # as Vault's table: the progress of an unseal only while there is one to make
        pairs += [("Unseal Progress", f"{seal.get('progress', 0)}/{seal.get('t', 0)}"),
                  ("Unseal Nonce", seal.get("nonce") or "n/a")]
    if seal.get("migration"):
        pairs.append(("Seal Migration in Progress", "true"))
    pairs += [("Version", seal.get("version") or "n/a"), ("Build Date", seal.get("build_date") or "n/a"),
              ("Storage Type", seal.get("storage_type") or "n/a")]
    for label, key in (("Cluster Name", "cluster_name"), ("Cluster ID", "cluster_id")):
        if seal.get(key):
            pairs.append((label, seal[key]))
    if leader is not None:
        pairs.append(("HA Enabled", output.go_value(bool(leader.get("ha_enabled")))))
        if leader.get("ha_enabled"):
            pairs.append(("HA Mode", "active" if leader.get("is_self") else "standby"))
            if not leader.get("is_self"):
                pairs.append(("Active Node Address", leader.get("leader_address") or "<none>"))
    return output.key_value_table(pairs)


def status(context: Context) -> int:
    with context.doing("checking seal status"):
        seal = context.client.get("sys/seal-status") or {}
    leader = None
    if not seal.get("sealed"):
        with contextlib.suppress(CliError):  # HA details are extra; the seal status has answered
            leader = context.client.get("sys/leader")
    if context.json:
        context.say(output.to_json({**seal, **({"ha_enabled": leader.get("ha_enabled")} if leader else {})}))
    else:
        context.say(seal_status_table(seal, leader))
    return 2 if seal.get("sealed") else 0


def is_recovery_seal(seal: dict) -> bool:
    """An auto seal: it takes recovery keys at init, and its status counts recovery shares."""
    return bool(seal.get("recovery_seal")) or (seal.get("type") or "shamir") != "shamir"


def init_request(flags: Values, recovery_seal: bool) -> dict:
    """Vault's InitRequest: the pair the seal takes defaults to 5/3; the other pair goes as given (0 when not),
    so that the server, not the CLI, refuses -key-shares on an auto seal and -recovery-shares on Shamir."""
    counts = {name: flags[name] or 0 for name in ("key-shares", "key-threshold", "recovery-shares",
                                                 "recovery-threshold")}
    taken = "recovery" if recovery_seal else "key"
    counts[f"{taken}-shares"] = counts[f"{taken}-shares"] or default_shares
    counts[f"{taken}-threshold"] = counts[f"{taken}-threshold"] or default_threshold
    return {"secret_shares": counts["key-shares"], "secret_threshold": counts["key-threshold"],
            "recovery_shares": counts["recovery-shares"], "recovery_threshold": counts["recovery-threshold"]}


def init(context: Context) -> int:
    if context.flags["status"]:
        with context.doing("checking init status"):
            initialized = bool((context.client.get("sys/init") or {}).get("initialized"))
        context.say("Vault is initialized" if initialized else "Vault is not initialized")
        return 0 if initialized else 2
    with context.doing("checking seal status"):
        seal = context.client.get("sys/seal-status") or {}
    request = init_request(context.flags, is_recovery_seal(seal))
    with context.doing("initializing"):
        reply = context.client.write("sys/init", request) or {}
    if context.json:
        context.say(output.to_json(machine_init(request, reply)))
    else:
        context.say(init_text(request, reply))
    return 0


def machine_init(request: dict, reply: dict) -> dict:
    """Vault's machineInit, the -format=json answer of `operator init`."""
    unseal_keys = reply.get("keys") or []
    return {
        "unseal_keys_b64": reply.get("keys_base64") or [], "unseal_keys_hex": unseal_keys,
        # Vault's own rule: no unseal keys back means the seal stores its one key itself
        "unseal_shares": request["secret_shares"] if unseal_keys else 1,
        "unseal_threshold": request["secret_threshold"] if unseal_keys else 1,
        "recovery_keys_b64": reply.get("recovery_keys_base64") or [],
        "recovery_keys_hex": reply.get("recovery_keys") or [],
        "recovery_keys_shares": request["recovery_shares"], "recovery_keys_threshold": request["recovery_threshold"],
        "root_token": reply.get("root_token", ""),
    }


def init_text(request: dict, reply: dict) -> str:
    """Vault's table output of `operator init`: the keys (base64 when the server sent it), the root token, and
    what to do with them."""
    lines = []
    for label, hex_name, base64_name in (("Unseal Key", "keys", "keys_base64"),
                                         ("Recovery Key", "recovery_keys", "recovery_keys_base64")):
        keys, encoded = reply.get(hex_name) or [], reply.get(base64_name) or []
        shown = encoded if len(encoded) == len(keys) else keys
        lines += [f"{label} {number}: {key}" for number, key in enumerate(shown, start=1)]
    lines += ["", f"Initial Root Token: {reply.get('root_token', '')}", ""]
    if reply.get("keys"):
        lines.append(init_message.format(shares=request["secret_shares"], threshold=request["secret_threshold"]))
    else:
        lines.append("Success! Vault is initialized")
    if reply.get("recovery_keys"):
        lines += ["", recovery_init_message.format(shares=request["recovery_shares"],
                                                   threshold=request["recovery_threshold"])]
    return "\n".join(lines)


def unseal(context: Context) -> int:
    if context.flags["reset"]:
        body = {"reset": True}
    else:
        key = context.args[0] if context.args else context.secret_input("Unseal Key (will be hidden): ")
        body = {"key": key.strip(), "migrate": bool(context.flags["migrate"])}
    with context.doing("unsealing"):
        seal = context.client.write("sys/unseal", body) or {}
    context.emit(seal, lambda: seal_status_table(seal))
    return 0


def seal(context: Context) -> int:
    with context.doing("sealing"):
        context.client.write("sys/seal")
    context.say("Success! Vault is sealed.")
    return 0


def key_status_table(key_status: dict) -> str:
    return output.aligned([
        ["Key Term", output.go_value(key_status.get("term"))],
        ["Install Time", output.go_value(key_status.get("install_time"))],
        ["Encryption Count", output.go_value(key_status.get("encryptions"))],
    ])


def _key_status(context: Context) -> dict:
    with context.doing("reading key status"):
        body = context.client.get("sys/key-status") or {}
    return body.get("data") or body


def key_status(context: Context) -> int:
    current = _key_status(context)
    context.say(output.to_json(current) if context.json else key_status_table(current))
    return 0


def rotate(context: Context) -> int:
    with context.doing("rotating key"):
        context.client.write("sys/rotate")
    current = _key_status(context)
    if context.json:
        context.say(output.to_json(current))
    else:
        context.say("Success! Rotated key")
        context.say()
        context.say(key_status_table(current))
    return 0


commands = [
    Command("status", "", "Print the seal status; exit 0 unsealed, 2 sealed, 1 on error.", status),
    Command("operator init", "", "Initialize the server: create the unseal (or recovery) key shares and the root "
            "token.", init,
            {"key-shares": Flag("int", "number of key shares to split the root key into (Shamir seal; default 5)"),
             "key-threshold": Flag("int", "number of key shares required to reconstruct the root key (Shamir seal; "
                                   "default 3)"),
             "recovery-shares": Flag("int", "number of recovery key shares (auto seal such as pkcs11; default 5)"),
             "recovery-threshold": Flag("int", "number of recovery key shares required to authorise an operation "
                                        "(auto seal; default 3)"),
             "status": Flag("bool", "only check whether it is initialized: exit 0 yes, 2 no")}),
    Command("operator unseal", "[KEY]", "Provide one unseal key share; prompts for it when not given.", unseal,
            {"reset": Flag("bool", "discard the key shares given so far"),
             "migrate": Flag("bool", "the share is for a seal migration: a share of the seal being migrated away "
                             "from")}, arity=(0, 1)),
    Command("operator seal", "", "Seal the server: it forgets its key until unsealed again.", seal),
    Command("operator rotate", "", "Add a new barrier key term; new writes use it.", rotate),
    Command("operator key-status", "", "Show the active barrier key term.", key_status),
]
