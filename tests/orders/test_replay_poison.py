"""`python -m connector replay-poison <queue>`: poison messages go back as they were, after a fix."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.__main__ import main
from tests.orders.support import SEED_EXAMPLE, EmulatorBC, OrderQueues, new_key

ROOT = Path(__file__).resolve().parents[2]


def test_replay_poison_moves_every_message_back_unchanged(
        connector_env: Any, queues: OrderQueues, capsys: pytest.CaptureFixture[str]) -> None:
    connector_env()
    texts = ['{"customerNumber": "GL00000008", "note": "naïve – €"}', "{not json", "  spaced  "]
    poison = queues.queue("sales-orders-poison")
    for text in texts:
        poison.send_message(text)

    assert main(["replay-poison", "sales-orders"]) == 0

    assert "moved 3 message(s) from sales-orders-poison to sales-orders" in capsys.readouterr().out
    assert queues.poison() == []
    moved = queues.queue("sales-orders")
    assert sorted(m.content for m in moved.receive_messages(max_messages=32)) == sorted(texts)


def test_replay_poison_moves_no_more_than_asked(connector_env: Any, queues: OrderQueues) -> None:
    connector_env()
    poison = queues.queue("sales-orders-poison")
    for n in range(5):
        poison.send_message(f'{{"n": {n}}}')

    assert main(["replay-poison", "sales-orders", "--max", "2"]) == 0

    assert len(queues.poison()) == 3


def test_replayed_order_is_created_once_its_cause_is_fixed(
        order_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = order_host()
    key, code = new_key("RPL"), new_key("V")[:10].upper()
    queues.send([SEED_EXAMPLE | {"externalDocumentNumber": key, "salesOrderLines": [
        {"itemNumber": "1896-S", "variantCode": code, "quantity": 1}]}])
    host.wait_idle(30)
    [failed] = queues.results()
    assert failed["error"]["code"] == "UnknownVariant"

    variant_id = bc.create_variant("1896-S", code)  # the fix
    assert main(["replay-poison", "sales-orders"]) == 0
    host.wait_idle(30)

    [result] = queues.results()
    [order] = bc.orders(key)
    assert (result["status"], result["salesOrderId"]) == ("created", order["id"])
    assert order["salesOrderLines"][0]["itemVariantId"] == variant_id
    assert queues.poison() == []


def test_replay_poison_reads_storage_from_a_settings_file(
        connector_env: Any, queues: OrderQueues, tmp_path: Path) -> None:
    values = connector_env()
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}), encoding="utf-8")
    queues.queue("sales-orders-poison").send_message('{"customerNumber": "GL00000008"}')

    assert main(["replay-poison", "sales-orders", "--settings", str(settings)]) == 0

    assert queues.poison() == []


def test_replay_poison_needs_only_the_storage_settings(
        connector_env: Any, queues: OrderQueues, tmp_path: Path) -> None:
    values = connector_env()
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"AzureWebJobsStorage": values["AzureWebJobsStorage"]}}))
    queues.queue("sales-orders-poison").send_message('{"customerNumber": "GL00000008"}')

    assert main(["replay-poison", "sales-orders", "--settings", str(settings)]) == 0

    assert queues.poison() == []


def test_schema_command_writes_the_published_schemas(tmp_path: Path) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0

    for name in ("sales-order.schema.json", "sales-order-claim-check.schema.json",
                 "sales-order-result.schema.json"):
        assert (tmp_path / name).read_text() == (ROOT / "schemas" / name).read_text()
