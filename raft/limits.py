"""Named bounds of the replication layer. Units come last in every name."""

from storage import limits as storage_limits

# pysyncobj frames one command in a message of at most 16 MiB; keep this much for its framing and pickle.
command_framing_bytes = 64 * 1024
# One encoded command (version byte plus msgpack), as proposed and as decoded on apply.
command_bytes_max = 16 * 1024 * 1024 - command_framing_bytes
# Ops in one command. The state machine adds up to two ops of its own to the batch: the idempotency record
# and the eviction of the oldest one.
state_machine_ops_per_entry = 2
command_ops_max = storage_limits.batch_ops_max - state_machine_ops_per_entry
idempotency_id_bytes = 16
# Recent idempotency ids the state machine remembers (in memory and in the store). Older ids are forgotten
# in raft-index order, identically on every node; a retry of a forgotten id applies again.
idempotency_ids_kept_max = 8192
# A rejection reason is cut to this many characters before it is stored, so the table stays small.
rejection_reason_chars_max = 512
# Proposer clocks: the stamped time must be a finite number of seconds since the epoch within this range.
proposed_unix_seconds_max = 2.0**40

assert 0 < command_framing_bytes < command_bytes_max
assert command_bytes_max + command_framing_bytes <= 16 * 1024 * 1024
# The store must hold one entry's ops plus the state machine's own, in one record.
assert command_bytes_max + 64 * 1024 <= storage_limits.record_payload_bytes_max
assert 0 < command_ops_max + state_machine_ops_per_entry <= storage_limits.batch_ops_max
assert idempotency_id_bytes == 16
assert idempotency_ids_kept_max > 0
assert 0 < rejection_reason_chars_max <= 4096
