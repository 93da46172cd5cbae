"""The KV secrets engine, wire-compatible with Vault's vault-plugin-secrets-kv.

`kv_v2_backend()` serves a versioned mount (`options.version` "2"): config, data/, metadata/, delete/,
undelete/, destroy/ and subkeys/. `kv_v1_backend()` serves a plain one. Each call builds a fresh Backend; the
storage layouts are described in records.py (v2) and v1.py (v1).

    v2.py        the v2 path declarations
    data.py      versions of a secret: read, write, patch, delete, undelete, destroy, subkeys
    metadata.py  a secret's settings and the mount's config
    records.py   what v2 stores, and its wire format
    inputs.py    request values beyond the SDK's field types: cas, versions, custom_metadata, merge patch
    v1.py        the whole of v1
"""

from .v1 import kv_v1_backend
from .v2 import kv_v2_backend

__all__ = ["kv_v1_backend", "kv_v2_backend"]
