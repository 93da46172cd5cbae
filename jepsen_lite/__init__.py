"""jepsen_lite: the chaos suite. It drives a cluster of real vaultd processes over HTTP only (a black box),
through leader kills, pauses, partitions and clock bumps, records every operation, and decides with an
algorithm whether the history was linearizable and whether anything acknowledged was lost (jepsen.md §6).

    python -m jepsen_lite run      a seeded run: cluster, workloads, nemesis, then check and report
    python -m jepsen_lite check D  the same check and report, offline, on the run saved in D

The run side:   __main__, runner, netns, cluster, net, clock, nemesis, watch, client, workloads/, errors
The record:     history       the JSON-lines history both sides share (its docstring holds the schema)
The check side: checker/      register (WGL), version, set, session, perf: one verdict
                report/       timeline.html, latency-raw.png, rate.png, the printed summary
                checkcli      check a saved run, write its report, exit 0 pass / 1 fail / 2 unknown / 3 aborted
"""
