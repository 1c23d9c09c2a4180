"""`govbus simulate` run tiny on the test session's broker (secured, real): a province of eleven
departments — two beyond the catalog's, each its own principal — whose topics, partitions,
ACLs and messages the broker counts exactly as the capacity model predicts, and every store of
which equals its entitlement. No timing is asserted: it depends on the machine."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from govbus.cli import main

COUNTED = ("topics: total", "topics: principal", "topics: deliver", "partitions: total", "ACLs", "messages: ingest",
           "messages: shared", "messages: state", "messages: deliver", "messages: audit", "messages: control")


def test_a_tiny_province_counts_what_the_capacity_model_predicts_and_every_store_equals_its_entitlement(
        on_session_broker: None, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["simulate", "--scale", "0.0016", "--entities", "160", "--day-seconds", "1",
                                       "--subscriptions-per-department", "1", "--seed", "3",
                                       "--out", str(tmp_path)])

    assert result.exit_code == 0, result.output
    [json_file] = tmp_path.glob("*-simulate-0.0016.json")
    assert json_file.with_suffix(".md").exists()
    document = json.loads(json_file.read_text())
    assert {"date", "machine", "versions", "parameters"} <= set(document) and document["versions"]["kafka"]
    province = document["province"]
    assert province["departments"] == 11 and province["simulated"] == 2
    rows = {row["quantity"]: row for row in document["comparison"]}
    for quantity in COUNTED:
        assert rows[quantity]["counted"] == round(rows[quantity]["predicted"]) > 0, quantity
    assert document["model_agrees"]
    assert document["counted"]["topics"]["principal"] == 4 * province["departments"] + 1
    assert document["counted"]["topics"]["deliver"] == province["delivery_topics"]
    stores = document["stores"]
    assert stores["ok"] and stores["checked"] == province["subscriptions"] and stores["events"] >= 1
    assert document["freshness"]["publish_to_applied_s"]["count"] > 0
