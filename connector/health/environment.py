"""The connection's environment changing under it, seen in BC's Admin Center operations log.

Only with BC_ADMIN_CENTER on (AdminCenter.ReadWrite.All, which can also delete environments). Each
check reads the environment's operations and acts once on every succeeded one it has not handled:
* **point-in-time restore**: BC's data went back to `pointInTime` under an integration that had
  already emitted events and created orders. The connection is paused (orders wait), its webhook
  subscriptions are re-created, the sweep goes back to the restore point, and every order the connector
  created after it that BC no longer has is one `bc.connector.order.vanished` event (never re-created
  silently). Then the pause is lifted.
* **copy into this environment**: the connection stops (paused) until a person confirms that it may
  act on the copied data (`POST /api/connections/{c}/environment/confirm`): a sandbox copied from
  production must not act as production.
* **rename** (BC_ENVIRONMENT must follow) and **update**: a `bc.connector.environment.changed` event.
The first check only records the operations already there (history is not news).
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.data.tables import UpdateMode

from connector.bc.admin_center import AdminCenterClient
from connector.bc.errors import BCNotFound
from connector.bc.timestamps import parse_iso
from connector.cursors import CursorTable
from connector.health.events import (
    ENVIRONMENT_CHANGED,
    ENVIRONMENT_COPIED,
    ENVIRONMENT_RESTORED,
    ORDER_VANISHED,
)
from connector.settings import TABLE_CONNECTIONS, TABLE_ORDERS
from connector.storage import read_entity, table_key
from connector.webhooks.context import WebhookContext

log = logging.getLogger(__name__)

ROW = "environment"
SEEN_KEPT = 200


def kind_of(operation: dict[str, Any]) -> str:
    """`restore`, `copy`, `rename`, `update` or '' (others), from the operation's `type`."""
    kind = str(operation.get("type", "")).lower()
    return {"pitrestore": "restore", "restore": "restore", "copy": "copy", "environmentrename": "rename",
            "rename": "rename", "update": "update"}.get(kind, "")


def concerns(operation: dict[str, Any], environment: str) -> bool:
    """The operation changed this environment (a copy counts for its destination)."""
    params = operation.get("parameters") or {}
    target = params.get("destinationEnvironmentName") if kind_of(operation) == "copy" else None
    return str(target or operation.get("environmentName", "")).lower() == environment.lower()


def new_operations(operations: list[dict[str, Any]], seen: set[str],
                   environment: str) -> list[dict[str, Any]]:
    """Succeeded operations on this environment not handled yet, oldest first (pure)."""
    return [o for o in operations if str(o.get("status", "")).lower() == "succeeded"
            and kind_of(o) and concerns(o, environment) and str(o.get("id")) not in seen]


class EnvironmentWatch:
    """One check of one connection's environment."""

    def __init__(self, ctx: WebhookContext, connection: str):
        self.ctx = ctx
        self.conn = ctx.settings.connection(connection)
        self.table = ctx.storage.table(TABLE_CONNECTIONS)
        self.admin = AdminCenterClient(
            self.conn.api_host,
            lambda force: ctx.tokens.access_token(self.conn.name, force_refresh=force),
            verify=ctx.settings.tls_ca_bundle or True)

    def _seen(self) -> tuple[set[str] | None, list[str]]:
        found = read_entity(self.table, self.conn.name, ROW)
        if not found:
            return None, []
        order = json.loads(found[0].get("seen") or "[]")
        return set(order), order

    def _remember(self, order: list[str]) -> None:
        self.table.upsert_entity({"PartitionKey": self.conn.name, "RowKey": ROW,
                                  "seen": json.dumps(order[-SEEN_KEPT:])}, mode=UpdateMode.MERGE)

    def check(self) -> list[dict[str, Any]]:
        """Act on every new operation; the operations handled."""
        operations = self.admin.operations(self.conn.environment)
        seen, order = self._seen()
        if seen is None:  # first check: what happened before is not news
            self._remember([str(o.get("id")) for o in operations])
            return []
        handled = []
        for operation in new_operations(operations, seen, self.conn.environment):
            getattr(self, f"_{kind_of(operation)}")(operation)
            order.append(str(operation.get("id")))
            self._remember(order)
            handled.append(operation)
        return handled

    # -- what each operation means ------------------------------------------------------------------
    def _restore(self, operation: dict[str, Any]) -> None:
        from connector.webhooks.subscriptions import reconcile
        from connector.webhooks.sweep import sweep

        op_id = str(operation["id"])
        point = parse_iso(str((operation.get("parameters") or {}).get("pointInTime")))
        health, pauses, name = self.ctx.health, self.ctx.pauses, self.conn.name
        company_id = self.ctx.company_id(name)
        health.emit(ENVIRONMENT_RESTORED, connection=name, company_id=company_id, occurrence=op_id,
                    summary=f"environment {self.conn.environment} was restored to {point.isoformat()}; "
                            "the connector re-subscribed, swept from that point and reports orders BC lost",
                    details={"operationId": op_id, "pointInTime": point.isoformat(),
                             "environment": self.conn.environment})
        pauses.pause(name, f"environment restored to {point.isoformat()} (operation {op_id})",
                     "wait: the connector is reconciling after the restore")
        try:
            with pauses.maintenance():
                self._rewind_sweep(company_id, point)
                reconcile(self.ctx, name)
                sweep(self.ctx, name)
                for order in self._vanished_orders(company_id, point):
                    key = order["externalDocumentNumber"] or order["salesOrderId"]
                    health.emit(ORDER_VANISHED, connection=name, company_id=company_id,
                                occurrence=f"{op_id}:{key}",
                                summary=f"order {order['number'] or order['salesOrderId']} "
                                        f"({order['externalDocumentNumber']}) created after the restore "
                                        "point is no longer in BC", details={**order, "operationId": op_id})
        finally:
            pauses.resume(name)

    def _rewind_sweep(self, company_id: str, point: datetime) -> None:
        """Each trigger's sweep cursor back to the restore point (a pass under way starts over)."""
        from connector.webhooks.sweep import cursor_key

        for trigger in self.conn.triggers:
            table = CursorTable(self.ctx.storage, self.conn.name, cursor_key(trigger, company_id))
            state = table.load()
            if state is None or state.cursor is None or state.cursor <= point:
                continue
            table.write(replace(state, cursor=point, next_link=None, pending=None, held=None,
                                run_started=None))

    def _vanished_orders(self, company_id: str, point: datetime) -> list[dict[str, str]]:
        """Orders the connector created after `point` that BC does not have any more."""
        rows = self.ctx.storage.table(TABLE_ORDERS).query_entities(
            "PartitionKey eq @pk and state eq 'created'",
            parameters={"pk": table_key(f"{self.conn.name}|{company_id}")})
        bc = self.ctx.bc(self.conn.name)
        gone = []
        for row in rows:
            claimed = parse_iso(str(row.get("claimed_at", "")) or "2000-01-01T00:00:00+00:00")
            order_id = str(row.get("sales_order_id", ""))
            if claimed <= point or not order_id:
                continue
            try:
                bc.get(bc.company_path(company_id, f"salesOrders({order_id})"))
            except BCNotFound:
                gone.append({"externalDocumentNumber": str(row.get("external_document_number", "")),
                             "salesOrderId": order_id, "number": str(row.get("number", "")),
                             "createdAt": claimed.isoformat()})
        return gone

    def _copy(self, operation: dict[str, Any]) -> None:
        op_id = str(operation["id"])
        source = (operation.get("parameters") or {}).get("sourceEnvironmentName", "?")
        fix = (f"confirm that connection {self.conn.name!r} may act on the data copied from {source}: "
               f"POST /api/connections/{self.conn.name}/environment/confirm (or point it elsewhere)")
        self.ctx.pauses.pause(self.conn.name, f"environment {self.conn.environment} was overwritten by a "
                                                  f"copy of {source} (operation {op_id})", fix)
        self.ctx.health.emit(
            ENVIRONMENT_COPIED, connection=self.conn.name, company_id=self.conn.company, occurrence=op_id,
            summary=f"environment {self.conn.environment} is now a copy of {source}; the connection is "
                    "stopped until a person confirms", fix=fix,
            details={"operationId": op_id, "sourceEnvironment": source, "environment": self.conn.environment})

    def _rename(self, operation: dict[str, Any]) -> None:
        new = (operation.get("parameters") or {}).get("newEnvironmentName", "?")
        self.ctx.health.emit(
            ENVIRONMENT_CHANGED, connection=self.conn.name, company_id=self.conn.company,
            occurrence=str(operation["id"]),
            summary=f"environment {self.conn.environment} was renamed to {new}",
            fix=f"set BC_ENVIRONMENT={new} for connection {self.conn.name!r}",
            details={"operation": "rename", "newEnvironmentName": new})

    def _update(self, operation: dict[str, Any]) -> None:
        params = operation.get("parameters") or {}
        self.ctx.health.emit(
            ENVIRONMENT_CHANGED, connection=self.conn.name, company_id=self.conn.company,
            occurrence=str(operation["id"]),
            summary=f"environment {self.conn.environment} was updated to {params.get('targetVersion', '?')}",
            fix="none needed; check that custom API pages still answer: python -m connector doctor",
            details={"operation": "update", **params})


def check_environments(ctx: WebhookContext) -> dict[str, list[dict[str, Any]]]:
    """Check every connection with BC_ADMIN_CENTER on; a failure is logged, not raised (the
    subscription run that follows must go on)."""
    done = {}
    for conn in ctx.settings.connections.values():
        if not conn.admin_center:
            continue
        try:
            done[conn.name] = EnvironmentWatch(ctx, conn.name).check()
        except Exception as exc:  # noqa: BLE001 - reported, never blocks the renewal
            log.warning("environment %s: the Admin Center check failed: %s", conn.name, exc)
    return done
