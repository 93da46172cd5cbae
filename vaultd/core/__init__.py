"""vaultd/core: seal state, barrier, tokens, ACL, mounts, leases, audit. Never imports HTTP or Raft."""
