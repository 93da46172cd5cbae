"""jepsen_lite/: the chaos suite. Drives real vaultd processes over HTTP only. Not built yet."""
