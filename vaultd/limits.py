"""Named bounds of vaultd. Units come last in every name; module-level asserts check how they relate."""

key_bytes_max = 4096
value_bytes_max = 1024 * 1024
request_body_bytes_max = 2 * 1024 * 1024
list_page_entries_max = 10_000
proposal_timeout_seconds = 10.0
read_barrier_wait_seconds = 5.0
index_wait_seconds = 2.0
# The expiration manager's pass over expired tokens (and the barrier's encryption-count save) repeats this often.
maintenance_interval_seconds = 5.0
# Vault's AbsoluteOperationMaximum: 10% shy of NIST's 2^32 random-nonce GCM invocations per key.
encryptions_per_term_max = 3_865_470_566

assert request_body_bytes_max > value_bytes_max
assert encryptions_per_term_max < 2**32

# Auto-unseal (PKCS#11): how often a sealed node with an auto seal tries, and the longest backoff after HSM faults.
auto_unseal_interval_seconds = 0.5
auto_unseal_backoff_max_seconds = 30.0
assert 0 < auto_unseal_interval_seconds < auto_unseal_backoff_max_seconds
