"""The engines the local stack starts: DynamoDB Local on the loopback interface only; kept state across a restart."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from local.stack import LocalStack, StackOptions
from tests.cli.conftest import CliStack


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on `port` (from /proc/net/tcp and tcp6, in their hex form)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


IPV4_LOOPBACK = "0100007F"  # 127.0.0.1, little-endian
IPV6_MAPPED_LOOPBACK = "0000000000000000FFFF00000100007F"  # ::ffff:127.0.0.1


def test_dynamodb_local_listens_on_the_loopback_interface_only(dynamodb_endpoint: str) -> None:
    port = urlparse(dynamodb_endpoint).port
    assert port is not None
    addresses = _listening_addresses(port)
    assert addresses and addresses <= {IPV4_LOOPBACK, IPV6_MAPPED_LOOPBACK}, addresses


def test_keep_state_keeps_the_ledger_and_the_names_across_a_restart(tmp_path: Path) -> None:
    options = StackOptions(state_dir=tmp_path, keep_state=True, batching_window_seconds=0, processing_delay_seconds=0.1)
    with LocalStack(options) as stack:
        assert stack.info is not None
        first = CliStack(stack, stack.info, tmp_path)
        ref = first.put("kept/referral.pdf")
        first.wait_status(ref, "UPLOADED")
        table = stack.info.table

    with LocalStack(options) as stack:
        assert stack.info is not None
        again = CliStack(stack, stack.info, tmp_path)
        assert stack.info.table == table and stack.info.bucket == first.info.bucket
        assert again.status_of(ref) == "UPLOADED"  # the ledger from the first run, read by the second
