"""How `tail` shows a message: one line with its type and key fields; `--type` patterns; control
characters never reach the terminal."""
import json

from connector.cli.lines import describe, format_line, message_type, printable, type_matches

ITEM = {"specversion": "1.0", "type": "bc.item.created", "subject": "df62412e-52e0-4207-85fd-543aa95d0538",
        "data": {"number": "1896-S", "displayName": "ATHENS Desk", "itemVariants": [{"code": "RED"}]}}
RESULT = {"externalDocumentNumber": "WEB-1", "status": "failed", "salesOrderId": None, "number": None,
          "error": {"code": "BCError", "message": "Customer GL9 does not exist."}, "traceparent": None}


def test_an_event_line_names_type_key_fields_and_queue():
    line = format_line("bc-items", json.dumps(ITEM), None, colour=False)
    assert "bc.item.created" in line and "number=1896-S" in line and 'displayName="ATHENS Desk"' in line
    assert "variants=RED" in line and line.endswith("(bc-items)") and "\n" not in line


def test_an_order_result_line_names_key_status_and_error():
    assert message_type("sales-order-results", RESULT) == "order.failed"
    assert describe("sales-order-results", RESULT) == "key=WEB-1  BCError: Customer GL9 does not exist."


def test_colour_only_when_asked():
    assert "\033[" in format_line("bc-items", json.dumps(ITEM), None, colour=True)
    assert "\033[" not in format_line("bc-items", json.dumps(ITEM), None, colour=False)


def test_type_patterns():
    assert type_matches("bc.item.created", [])
    assert type_matches("bc.item.created", ["item.created"])
    assert type_matches("bc.item.created", ["bc.item.*"])
    assert not type_matches("bc.item.updated", ["item.created"])
    assert type_matches("order.failed", ["order.*"]) and type_matches("poison.sales-orders", ["poison.*"])


def test_escape_sequences_in_a_message_are_shown_not_sent_to_the_terminal():
    evil = dict(ITEM, data={"number": "X\033[2J\033]0;owned\007", "displayName": "a\nb"})
    line = format_line("bc-items", json.dumps(evil), None, colour=False)
    assert "\033" not in line and "\007" not in line and "\n" not in line
    assert printable("\033[2J") == "\\x1b[2J"
