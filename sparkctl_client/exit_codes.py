"""Exit statuses of sparkctl-client."""

OK = 0
ERROR = 1  # the daemon answered with an error
USAGE = 2  # bad command line (argparse's own code)
UNREACHABLE = 3  # no daemon answers on the socket
PRECONDITION = 4  # the cluster is not ready for the request (FAILED_PRECONDITION)
