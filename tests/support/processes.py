"""Processes in the process table that carry a local stack's id (DOCDROP_STACK_ID), read from /proc."""

from __future__ import annotations

from pathlib import Path


def processes_of_stack(stack_id: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment holds DOCDROP_STACK_ID=stack_id."""
    marker = f"DOCDROP_STACK_ID={stack_id}".encode()
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            status = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if status != "Z":  # a zombie has ended; only its parent's wait is missing
            found.append((int(entry.name), command))
    return found
