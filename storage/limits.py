"""Named bounds of the storage engine. Units come last in every name."""

key_bytes_max = 4096
value_bytes_max = 1024 * 1024
record_payload_bytes_max = 16 * 1024 * 1024
segment_bytes_max = 64 * 1024 * 1024
batch_ops_max = 1024

# Compaction picks a sealed segment once this share of its bytes is dead.
compaction_dead_ratio_min = 0.5
# Background compaction copies at most this many bytes per second.
compaction_rate_bytes_per_second = 32 * 1024 * 1024
# How often the background thread looks for work.
maintenance_interval_seconds = 1.0
# After a failed maintenance pass (a full disk, a corrupt sealed segment) the next waits twice as long, up to this.
maintenance_backoff_seconds_max = 300.0
# Entries per framed chunk of a hint file (one msgpack unpack each).
hint_chunk_entries = 8192
# Records per framed chunk when a snapshot stream is read.
snapshot_read_bytes = 1024 * 1024

assert value_bytes_max + key_bytes_max + 64 <= record_payload_bytes_max
assert record_payload_bytes_max <= segment_bytes_max
assert 0 < compaction_dead_ratio_min < 1
assert maintenance_interval_seconds < maintenance_backoff_seconds_max
