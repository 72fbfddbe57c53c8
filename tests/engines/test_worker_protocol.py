"""The worker protocol (worker/protocol.py): every message round-trips as JSON; another version, a
message that is not JSON and a missing field are refused naming what is wrong."""

from __future__ import annotations

import json

import pytest

from batchpoint.storage.base import StorageSpec
from batchpoint.worker import protocol


def test_every_message_round_trips_as_plain_json() -> None:
    spec = StorageSpec("local", {"path": "/data"}, {"kind": "sas", "sas_token": "sv=1"})
    config = protocol.job_config(name="j", worker_id=2, scorer={"model_dir": "/m"}, sources={"in": spec},
                                 parts_dir="/p", logs_dir="/l", output_action="append_row", logging_level="info",
                                 environment={"A": "1"})
    messages = [
        protocol.start(config),
        protocol.batch("00000003-0001", 3, 1, 2, 4, [{"source": "in", "path": "a.csv"}], {"in": spec}),
        protocol.batch("00000004-0000", 4, 0, 1, 1, [], None),
        protocol.stop(),
        protocol.ready(2, 0.25),
        protocol.init_failed({"type": "RuntimeError", "message": "m", "where": None, "kind": "user"}),
        protocol.done("00000003-0001", 10, None),
        protocol.done("00000003-0002", 10, None, segment={"file": "seg-0-12-ab12cd34.csv", "offset": 40, "length": 9}),
        protocol.done("00000003-0001", 0, {"type": "OSError", "message": "full", "where": None, "kind": "platform"}),
    ]
    for message in messages:
        data = protocol.encode(message)
        assert json.loads(data)["v"] == protocol.PROTOCOL_VERSION == 2
        assert protocol.decode(data) == message
    start = protocol.decode(protocol.encode(messages[0]))
    assert protocol.spec_from_dict(start["job"]["sources"]["in"]) == spec


def test_another_version_is_refused_naming_both() -> None:
    data = json.dumps({"v": 1, "type": "ready", "worker": 0, "init_seconds": 0}).encode()
    with pytest.raises(protocol.ProtocolError, match=r"version 1, this side speaks version 2.*same Batchpoint"):
        protocol.decode(data, peer="worker of slot 0")


@pytest.mark.parametrize(("data", "match"), [
    (b"\x80\x04pickled", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"v": protocol.PROTOCOL_VERSION, "type": "launch"}).encode(), "unknown type 'launch'"),
    (json.dumps({"v": protocol.PROTOCOL_VERSION, "type": "done", "key": "k"}).encode(), "lacks rows, error"),
])
def test_bad_messages_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=match):
        protocol.decode(data)


def test_a_value_json_cannot_carry_is_refused_at_the_sender() -> None:
    with pytest.raises(protocol.ProtocolError, match="cannot be sent as JSON"):
        protocol.encode(protocol.start({"when": object()}))
