"""vaultd: a Vault-compatible, Raft-replicated secrets server."""

__version__ = "0.1.0"
