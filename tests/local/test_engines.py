"""The engines the local stack starts: DynamoDB Local on the loopback interface only; kept state across a restart."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from local.samples import pdf_bytes
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


def test_an_orderly_stop_with_uploads_in_flight_leaves_every_document_cobalt_stored_recorded(tmp_path: Path) -> None:
    options = StackOptions(
        state_dir=tmp_path,
        keep_state=True,  # the ledger is read again after the stop, by the next start
        batching_window_seconds=0,
        processing_delay_seconds=0.1,
        cobalt_answer_seconds=11,  # longer than the old stop waited (10 s) for the uploads in flight
    )
    with LocalStack(options) as stack:
        assert stack.info is not None and stack.sandbox is not None
        running = CliStack(stack, stack.info, tmp_path)
        refs = [running.put(f"orderly/doc-{n}.pdf", pdf_bytes(f"orderly {n}")) for n in range(12)]
        running.wait_for(lambda: stack.functions["uploader"].in_flight > 0, 60, "an upload in flight")
        sandbox = stack.sandbox
    # The with block stopped the stack as Ctrl-C or SIGTERM does, with uploads on their way to Cobalt.

    stored = {d["filename"] for d in sandbox._public_documents()}
    assert stored, "nothing reached Cobalt before the stop: the test proved nothing"
    with LocalStack(options) as stack:
        assert stack.info is not None
        again = CliStack(stack, stack.info, tmp_path)
        for ref in refs:
            name = ref.key.rsplit("/", 1)[-1]
            item = again.ledger.get_object(ref)
            if name in stored:  # Cobalt has it: the ledger must say so, with its document id
                assert item is not None and item["status"] in ("SUBMITTED", "UPLOADED") and item.get("document_id")
            else:  # never sent: not claimed, or its claim still waits (RECEIVED is reviewed, never resent)
                assert item is None or item["status"] in ("RECEIVED", "WAITING_FOR_TAGS", "PENDING_RETRY")
