"""First module the fork server preloads: it ignores SIGINT from here on (as it does itself
once its preloads are imported), so that a Ctrl-C to the process group while the server is
still importing neither kills it nor prints a traceback; the workers it forks inherit this
(their owner stops them). Never imported by the owning process."""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
