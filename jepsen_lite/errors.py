"""What can stop a jepsen_lite run before it has a history worth checking. Each is an operating error of the
harness or of the cluster under test, reported with a clear message and exit status 3 ("aborted"): a run that
aborted proves nothing either way, so it never passes.

    HarnessError              the run could not do what it set out to do
    ├── NamespaceError        no private network namespace (unshare or ip missing, or refused)
    ├── ClusterError          a node would not start, initialise, unseal, mount or elect a leader
    │   └── WaitTimeout       a deadline passed (also a TimeoutError)
    └── NemesisIneffective    a fault did not take effect (a cut that leaks, a heal that does not heal)

Safety violations are not errors: the checker reports them in its verdict.
"""


class HarnessError(RuntimeError):
    """The run could not do what it set out to do; the message says what and why."""


class NamespaceError(HarnessError):
    """No private network namespace: `unshare -rn` or `ip link set lo up` failed or is missing."""


class ClusterError(HarnessError):
    """A node would not start, initialise, unseal, mount or elect a leader."""


class WaitTimeout(ClusterError, TimeoutError):
    """A deadline passed; the message names what did not happen and what was last seen."""


class NemesisIneffective(HarnessError):
    """A fault did not take effect, so the run cannot claim to have tested it: a cut that leaks, a heal that
    does not heal, a signal that did not reach its process."""
