"""Exit codes of the `meshwarden` command; scripts may rely on them."""

OK = 0
FAILED = 1  # the mesh or a server answered with an error (details on stderr)
USAGE = 2  # bad flags, bad configuration or bad input (argparse uses 2 as well)
UNREACHABLE = 3  # the registry or sidecar could not be reached
TAMPERED = 4  # `receipts verify`: a stored receipt was altered, removed or added (stdout names chain and seq)
