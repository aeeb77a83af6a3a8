"""Imported only in the ``forkserver`` process of the processes executor (as a preload, see
``processes.default_mp_context``), never in the queue's own process.

A ``systemctl stop`` (cgroup kill), ``kill -TERM -<pgid>`` or a supervisor's group kill sends
SIGTERM to every process of the service at once. The queue's process answers it by draining
(``run_forever``); the fork server, on SIGTERM's default action, would die — and with it the
owner's view of every worker it forked (their exit statuses come through it: a running worker
would be taken for one that died, its attempt failed and retried beside it). So the fork
server ignores SIGTERM; it goes when the owner does (it exits once the owner's end of its
socket closes). The handler is a Python one, not ``SIG_IGN``: an ignored disposition would be
inherited through ``exec`` by the programs that handlers start.
"""

from __future__ import annotations

import signal

from actionqueue.runtime.executors._procworker import ignore_stop_signal

signal.signal(signal.SIGTERM, ignore_stop_signal)
