"""The test suite's root: pytest puts this directory on ``sys.path`` (rootdir-less "prepend"
import mode), so helpers shared by several test packages live here (``forking.py``)."""
