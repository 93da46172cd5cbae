"""vaultd/engines: secrets engines. Each builds a `vaultd.sdk.backend.Backend` from `Path` declarations and
imports nothing of vaultd but `vaultd.sdk`: it sees its own mount's storage view, never tokens or other mounts,
and reads no clock (times come from `Request.received_at`)."""
