"""raft/: replication on pysyncobj, hardened. The only importer of pysyncobj (in raft/node.py). Not built yet."""
