"""The transit secrets engine, wire-compatible with Vault's builtin/logical/transit and sdk/helper/keysutil:
named keys that encrypt, decrypt, sign, verify and HMAC, and whose material never leaves the mount's view
unless a key is made exportable and exported.

`transit_backend()` builds a fresh Backend (with its own per-key locks) for one mount. Storage layout:
`policy/<name>`, one JSON record per key holding every version (policy.py).

    paths.py       the path declarations
    keys.py        keys/, keys/<name>, its config and rotate, and export/
    encryption.py  encrypt/, decrypt/, rewrap/ and datakey/, one item or a batch
    signing.py     hmac/, sign/ and verify/, one item or a batch
    tools.py       hash/ and random/
    backup.py      backup/ and restore/
    ciphers.py     AES-GCM, ChaCha20-Poly1305 and RSA-OAEP with one key version; Vault's ciphertext format
    signatures.py  ed25519, ECDSA and RSA signatures and HMACs with one key version
    material.py    making key versions, HKDF derivation, public and exported forms
    policy.py      what a key is and how it is stored; the per-key locks
    inputs.py      Go's base64 and Atoi, batch_input items and the vault:v<N>: prefix, with Vault's messages
"""

from .paths import transit_backend

__all__ = ["transit_backend"]
