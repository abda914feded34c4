"""Exit codes of the `meshwarden` command; scripts may rely on them."""

OK = 0
FAILED = 1  # the mesh or a server answered with an error (details on stderr)
USAGE = 2  # bad flags, bad configuration or bad input (argparse uses 2 as well)
UNREACHABLE = 3  # the registry or sidecar could not be reached
TAMPERED = 4  # `receipts verify`: a stored receipt was altered, removed or added (stdout names chain and seq)
NOT_FOUND = 5  # `approvals`: no such approval
CONFLICT = 6  # `approvals approve/deny`: the approval is no longer pending (decided, used or expired)
TIMED_OUT = 7  # the registry was reached but did not answer within --timeout
ATTENTION = 8  # `sessions suspect`: suspect sessions found; `changes`: a significant difference found
