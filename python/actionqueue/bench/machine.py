"""What machine and filesystem a run happened on, recorded with every result."""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mount_of(path: Path) -> tuple[str, str, str]:
    """(device, mount point, fs type) of the longest /proc/mounts entry containing ``path``."""
    best = ("unknown", "", "unknown")
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    resolved = str(path.resolve())
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        device, mount, fstype = parts[0], parts[1].replace("\\040", " "), parts[2]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[1]):
            best = (device, mount, fstype)
    return best


def _statfs_type(path: Path) -> str | None:
    # `stat -f -c %T` names the type as the kernel's magic number says (ext2/ext3 covers ext4).
    if shutil.which("stat") is None:
        return None
    try:
        out = subprocess.run(
            ["stat", "-f", "-c", "%T", str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_info(target: Path) -> dict[str, object]:
    """CPU, cores, kernel, Python, load, and the filesystem/device holding ``target``."""
    device, mount, fstype = _mount_of(target)
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": platform.system(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "load_average_at_start": load,
        "target_dir": str(target.resolve()),
        "filesystem": {
            "statfs_type": _statfs_type(target),
            "mounts_type": fstype,
            "device": device,
            "mount_point": mount,
        },
    }


def distribution_version(distribution: str | None) -> str | None:
    """The installed version of a distribution, or ``None`` when absent or not given."""
    return _version(distribution) if distribution else None
