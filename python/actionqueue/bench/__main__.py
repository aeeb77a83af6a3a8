"""``python -m actionqueue.bench``: the same command as ``actionqueue bench``."""

from __future__ import annotations

from actionqueue.cli.bench import bench

if __name__ == "__main__":
    bench(prog_name="python -m actionqueue.bench")
