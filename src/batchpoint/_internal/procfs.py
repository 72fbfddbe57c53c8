"""What ``/proc/<pid>/status`` says of a process's memory."""

from __future__ import annotations


def status_bytes(pid: int, field: str) -> int:
    """A memory field of process ``pid`` in bytes (``VmRSS``: now, ``VmHWM``: its peak); 0 when it
    cannot be read."""
    prefix = field.encode() + b":"
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(prefix):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
