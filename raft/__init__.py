"""raft/: replication on pysyncobj, hardened. The only importer of pysyncobj is raft/node.py.

Built so far, not yet wired into the server: the cluster key file (keyfile.py), the versioned command codec
(command.py), the total and deterministic state machine (state_machine.py), the durable journal (journal.py),
the hardened node (node.py: keyed transport with bounded frames, journal flushed before every send, an async
submit with typed errors, snapshots that are the store's export stream (snapshot.py)) and the replicated
physical layer with a coalesced read barrier (backend.py). Membership changes and the wiring into vaultd
(forwarding, standbys, operator endpoints) are still to come.
"""
