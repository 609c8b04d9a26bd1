"""Sales document rules of the BC API emulator (dev tooling, never deployed): sales orders and draft
sales invoices and sales quotes with deep insert and lines (bc-api.md §3.5-3.10, §4), and posting
shipments (with their item ledger entries) and invoices."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from devtools.emulator.bc_rules import (
    check_body,
    check_new_id,
    dialog,
    record_not_found,
    resolve_currency,
    resolve_payment_terms,
)
from devtools.emulator.bc_schema import COMPANY_SETS, ITEM_LEDGER_ENTRY, SALES_SHIPMENT, SALES_SHIPMENT_LINE
from devtools.emulator.odata import EMPTY_GUID, bad_request
from devtools.emulator.store import Company, EntitySet, Row, Store

if TYPE_CHECKING:
    from devtools.emulator.business_events import BusinessEventEngine

LINES = {"salesOrders": "salesOrderLines", "salesInvoices": "salesInvoiceLines",
         "salesQuotes": "salesQuoteLines", "salesCreditMemos": "salesCreditMemoLines",
         "purchaseOrders": "purchaseOrderLines"}
HEADERS = {line: header for header, line in LINES.items()}
SERIES = {"salesOrders": ("S-ORD", 101001), "salesInvoices": ("S-INV", 102001),
          "salesQuotes": ("S-QUO", 1001), "salesCreditMemos": ("S-CR", 104001),
          "purchaseOrders": ("P-ORD", 106001)}
DATES = {"salesOrders": ("orderDate", "postingDate"), "salesInvoices": ("invoiceDate", "postingDate"),
         "salesQuotes": ("documentDate", "postingDate"),
         "salesCreditMemos": ("creditMemoDate", "postingDate"),
         "purchaseOrders": ("orderDate", "postingDate")}
_VENDOR_FIELDS = ("vendorId", "vendorNumber")
_ADDRESS = ("AddressLine1", "AddressLine2", "City", "Country", "State", "PostCode")
_CUSTOMER_ADDRESS = ("addressLine1", "addressLine2", "city", "country", "state", "postalCode")
_CUSTOMER_FIELDS = ("customerId", "customerNumber")
# What posting an order's invoice copies from the order header (besides its lines)
_INVOICE_FROM_ORDER = (
    "customerId externalDocumentNumber currencyCode paymentTermsId shipmentMethodId salesperson "
    "shipToName shipToContact shortcutDimension1Code shortcutDimension2Code phoneNumber email "
    + " ".join(p + a for p in ("sellTo", "shipTo") for a in _ADDRESS)
).split()
# Order line type (enum "Invoice Line Agg. Line Type") → posted shipment line type (enum "Sales Line
# Type"), XML-encoded as the API sends enum names
SHIPMENT_LINE_TYPES = {
    "Comment": "_x0020_",
    "Account": "G_x002F_L_x0020_Account",
    "Item": "Item",
    "Resource": "Resource",
    "Fixed_x0020_Asset": "Fixed_x0020_Asset",
    "Charge": "Charge_x0020__x0028_Item_x0029_",
    "Allocation_x0020_Account": "Allocation_x0020_Account",
}


def money(value: float) -> float:
    """Round to 2 decimals like BC amounts."""
    return round(value + 0.0, 2)


class DocumentRules:
    """Create/update/delete of salesOrders, salesInvoices and their lines; posting."""

    def __init__(self, store: Store, events: BusinessEventEngine | None = None) -> None:
        self.store = store
        self.events = events

    def raise_after_commit(self, company: Company, name: str, payload: dict[str, Any],
                            set_name: str, entity_id: str) -> None:
        """Raise business event `name` once the posting commits (`Url` = the entity's API URL)."""
        events = self.events
        if events is not None:
            self.store.after_commit(lambda: events.raise_event(
                company, name, payload | {"Url": events.api_url(company, set_name, entity_id),
                                          "WebClientUrl": ""}))

    # ---- headers ---------------------------------------------------------------------------------

    def create(self, company: Company, set_name: str, values: dict[str, Any], parts: dict[str, list]) -> Row:
        """POST a sales order or draft invoice, with deep-inserted lines (all or nothing)."""
        check_new_id(company, set_name, values)
        data = COMPANY_SETS[set_name].blank()
        today = self._today()
        data.update({d: today for d in DATES[set_name]}, status="Draft")
        if set_name == "salesOrders":
            data["partialShipping"] = True
        data.update(values)
        if set_name == "purchaseOrders":
            self._apply_vendor(company, data, values)
        else:
            self._apply_customer(company, data, values)
        data.update(resolve_currency(company, values, data))
        data.update(resolve_payment_terms(company, values))
        if set_name in ("salesInvoices", "salesCreditMemos"):
            data["dueDate"] = self._due_date(company, data)
        prefix, start = SERIES[set_name]
        data["number"] = self.store.next_number(company, prefix, start)
        header = self.store.insert(company, set_name, data)
        for line in parts.get(LINES[set_name], []):
            if "documentId" in line:
                raise dialog('The value for "documentId" cannot be modified.')
            self.create_line(company, LINES[set_name], line, header, recalc=False)
        self.recalc(company, set_name, header, report=False)
        return header

    def update(self, company: Company, set_name: str, row: Row, values: dict[str, Any]) -> None:
        """PATCH a sales order or draft invoice header."""
        self._check_draft(set_name, row)
        data = row.data | values
        if set_name == "purchaseOrders" and any(f in values for f in _VENDOR_FIELDS):
            self._apply_vendor(company, data, values)
        elif set_name != "purchaseOrders" and any(f in values for f in _CUSTOMER_FIELDS):
            self._apply_customer(company, data, values)
        data.update(resolve_currency(company, values, data))
        data.update(resolve_payment_terms(company, values))
        self.store.modify(company, set_name, row, {k: v for k, v in data.items() if row.data[k] != v})
        self.recalc(company, set_name, row, report=False)

    def delete(self, company: Company, set_name: str, row: Row) -> None:
        """DELETE a header with its lines."""
        self._check_draft(set_name, row)
        for line in list(company.sets[LINES[set_name]].children(row.id)):
            self.store.delete(company, LINES[set_name], line)
        self.store.delete(company, set_name, row)

    def _apply_customer(self, company: Company, data: dict[str, Any], values: dict[str, Any]) -> None:
        customer = _party(
            company.sets["customers"], values, "customer",
            unknown_id=dialog("The sell-to customer cannot be found."),
            unknown_number=lambda number: record_not_found("Customer", f"No.='{number}'"),
            mismatch=dialog("The sell-to customer values do not match to a specific Customer."))
        cust = customer.data
        if cust["blocked"] == "All":
            raise dialog(
                f"You cannot create this type of document when Customer {cust['number']} is blocked with "
                "type All"
            )
        defaults = {
            "customerId": customer.id,
            "customerNumber": cust["number"],
            "customerName": cust["displayName"],
            "billToCustomerId": customer.id,
            "billToCustomerNumber": cust["number"],
            "billToName": cust["displayName"],
            "shipToName": cust["displayName"],
            "phoneNumber": cust["phoneNumber"],
            "email": cust["email"],
            "salesperson": cust["salespersonCode"],
            "paymentTermsId": cust["paymentTermsId"],
            "shipmentMethodId": cust["shipmentMethodId"],
            "currencyCode": cust["currencyCode"],
        }
        for suffix, source in zip(_ADDRESS, _CUSTOMER_ADDRESS, strict=True):
            for prefix in ("sellTo", "billTo", "shipTo"):
                defaults[prefix + suffix] = cust[source]
        data.update({k: v for k, v in defaults.items() if k in data})
        data.update({k: v for k, v in values.items() if k not in _CUSTOMER_FIELDS})

    def _apply_vendor(self, company: Company, data: dict[str, Any], values: dict[str, Any]) -> None:
        """The buy-from vendor of a purchase order (page 30066's rules and messages) and what it fills."""
        vendor = _party(
            company.sets["vendors"], values, "vendor",
            unknown_id=dialog("The buy-from vendor cannot be found."),
            unknown_number=lambda _: dialog("The buy-from vendor cannot be found."),
            mismatch=dialog("The buy-from vendor values do not match to a specific Vendor."))
        v = vendor.data
        defaults = {"vendorId": vendor.id, "vendorNumber": v["number"], "vendorName": v["displayName"],
                    "payToVendorId": vendor.id, "payToVendorNumber": v["number"],
                    "payToName": v["displayName"], "currencyCode": v["currencyCode"],
                    "paymentTermsId": v["paymentTermsId"]}
        for suffix, source in zip(_ADDRESS, _CUSTOMER_ADDRESS, strict=True):
            for prefix in ("buyFrom", "payTo"):
                defaults[prefix + suffix] = v[source]
        data.update({k: v for k, v in defaults.items() if k in data})
        data.update({k: v for k, v in values.items() if k not in _VENDOR_FIELDS})

    def _check_draft(self, set_name: str, row: Row) -> None:
        if set_name == "salesInvoices" and row.data["status"] != "Draft":
            raise dialog(f"You cannot change the posted Sales Invoice {row.data['number']}.")

    def _today(self) -> str:
        return self.store.clock.now().date().isoformat()

    def _due_date(self, company: Company, data: dict[str, Any]) -> str:
        terms = company.sets["paymentTerms"].get(data["paymentTermsId"])
        formula = terms.data["dueDateCalculation"] if terms else ""
        base = date.fromisoformat(data["invoiceDate"] if "invoiceDate" in data else self._today())
        digits = "".join(c for c in formula if c.isdigit())
        if not digits:
            return base.isoformat()
        days = int(digits) * (
            30 if formula.upper().endswith("M") else 7 if formula.upper().endswith("W") else 1
        )
        return (base + timedelta(days=days)).isoformat()

    # ---- lines -----------------------------------------------------------------------------------

    def create_line(
        self, company: Company, set_name: str, body: Any, header: Row | None, *, recalc: bool = True
    ) -> Row:
        """POST a line under `header` (navigation) or standalone (documentId in the body)."""
        etype = COMPANY_SETS[set_name]
        values, _ = check_body(etype, body)
        check_new_id(company, set_name, values)
        header_set = HEADERS[set_name]
        if header is None:
            if values.get("documentId", EMPTY_GUID) == EMPTY_GUID:
                raise dialog("You must specify a document id to get the lines.")
            header = company.sets[header_set].get(values["documentId"])
            if header is None:
                raise dialog("No document with the specified ID exists.")
        elif values.get("documentId", header.id) != header.id:
            raise dialog('The value for "documentId" cannot be modified.')
        self._check_draft(header_set, header)
        siblings = company.sets[set_name].children(header.id)
        data = etype.blank()
        data.update(values, documentId=header.id)
        if "sequence" in values:
            if any(s.data["sequence"] == values["sequence"] for s in siblings):
                raise dialog("You cannot insert a line because a line already exists.")
        else:
            data["sequence"] = max((s.data["sequence"] for s in siblings), default=0) + 10000
        self._apply_product(company, data, values, new=True)
        self._amounts(company, data, values)
        for to_handle in ("shipQuantity", "receiveQuantity"):
            if to_handle in data:
                data[to_handle] = values.get(to_handle, data["quantity"])
                data["invoiceQuantity"] = values.get("invoiceQuantity", data["quantity"])
        row = self.store.insert(company, set_name, data)
        if recalc:
            self.recalc(company, header_set, header)
        return row

    def update_line(self, company: Company, set_name: str, row: Row, values: dict[str, Any]) -> None:
        """PATCH a line; the header's totals follow."""
        header_set, header = self._header_of(company, set_name, row)
        data = row.data | values
        if any(k in values for k in ("itemId", "accountId", "lineType", "itemVariantId")):
            self._apply_product(company, data, values, new=False)
        self._amounts(company, data, values)
        if "shipQuantity" in data:
            if data["quantity"] < data["shippedQuantity"]:
                raise dialog(
                    f"Quantity must not be less than {data['shippedQuantity']}, the shipped quantity."
                )
            if "quantity" in values:
                data["shipQuantity"] = values.get("shipQuantity", data["quantity"] - data["shippedQuantity"])
                data["invoiceQuantity"] = values.get(
                    "invoiceQuantity", data["quantity"] - data["invoicedQuantity"]
                )
        self.store.modify(company, set_name, row, {k: v for k, v in data.items() if row.data[k] != v})
        self.recalc(company, header_set, header)

    def delete_line(self, company: Company, set_name: str, row: Row) -> None:
        """DELETE a line; the header's totals follow."""
        header_set, header = self._header_of(company, set_name, row)
        self.store.delete(company, set_name, row)
        self.recalc(company, header_set, header)

    def _header_of(self, company: Company, set_name: str, line: Row) -> tuple[str, Row]:
        """The set and row of an existing line's document, which must still be a draft."""
        header_set = HEADERS[set_name]
        header = company.sets[header_set].get(line.data["documentId"])
        if header is None:  # lines go with their document, so only a broken store gets here
            raise dialog("No document with the specified ID exists.")
        self._check_draft(header_set, header)
        return header_set, header

    def _apply_product(
        self, company: Company, data: dict[str, Any], values: dict[str, Any], *, new: bool
    ) -> None:
        item_id = values.get("itemId", EMPTY_GUID)
        account_id = values.get("accountId", EMPTY_GUID)
        if item_id != EMPTY_GUID and account_id != EMPTY_GUID:
            raise dialog('Both "itemId" and "accountId" are specified. Specify only one of them.')
        implied = "Item" if item_id != EMPTY_GUID else "Account" if account_id != EMPTY_GUID else None
        line_type = values.get("lineType") or implied or data["lineType"] or "Comment"
        if implied and line_type != implied:
            raise dialog(f'The "lineType" {line_type} does not match the given "{implied.lower()}Id".')
        data["lineType"] = line_type
        number = values.get("lineObjectNumber", "") if new else data["lineObjectNumber"]
        if line_type == "Item":
            product = self._find(company, "items", item_id, number, "Item does not exist.", "Item")
            if product.data["blocked"]:
                raise bad_request(
                    "Application_FieldValidationException",
                    "Blocked must be equal to 'No'  in Item: "
                    f"No.={product.data['number']}. Current value is 'Yes'.",
                )
            data.update(itemId=product.id, accountId=EMPTY_GUID, lineObjectNumber=product.data["number"])
            if new:
                data["unitOfMeasureCode"] = values.get(
                    "unitOfMeasureCode", product.data["baseUnitOfMeasureCode"]
                )
                if "directUnitCost" in data:  # a purchase line: the item's cost, not its price
                    data["directUnitCost"] = values.get("directUnitCost", product.data["unitCost"])
                else:
                    data["unitPrice"] = values.get("unitPrice", product.data["unitPrice"])
        elif line_type == "Account":
            product = self._find(
                company, "accounts", account_id, number, "Account does not exist.", "G/L Account"
            )
            data.update(accountId=product.id, itemId=EMPTY_GUID, lineObjectNumber=product.data["number"])
        elif line_type == "Comment":
            if number:
                raise record_not_found("Standard Text", f"Code='{number}'")
            product = None
        else:
            raise dialog(f"The emulator does not support lines of type {line_type}.")
        if new and product is not None and "description" not in values:
            data["description"] = product.data["displayName"]
        variant_id = data["itemVariantId"]
        if variant_id != EMPTY_GUID:
            variant = company.sets["itemVariants"].get(variant_id)
            if variant is None or line_type != "Item" or variant.data["itemId"] != data["itemId"]:
                raise dialog('The "itemVariantId" does not match to a variant of the item.')

    def _find(self, company: Company, set_name: str, key: str, number: str, id_error: str, label: str) -> Row:
        entity_set = company.sets[set_name]
        if key != EMPTY_GUID:
            found = entity_set.get(key)
            if found is None:
                raise dialog(id_error)
            if number and found.data["number"] != number:
                raise dialog(f'The "lineObjectNumber" {number} does not match the {label} of the given id.')
            return found
        if not number:
            raise dialog(f'A "lineObjectNumber" or an id must be provided for a line of type {label}.')
        found = entity_set.by_number(number)
        if found is None:
            raise record_not_found(label, f"No.='{number}'")
        return found

    def _amounts(self, company: Company, data: dict[str, Any], values: dict[str, Any]) -> None:
        gross = money(data["quantity"] * data.get("unitPrice", data.get("directUnitCost", 0)))
        if "discountAmount" in values and "discountPercent" not in values:
            data["discountPercent"] = round(data["discountAmount"] / gross * 100, 5) if gross else 0
        else:
            data["discountAmount"] = money(gross * data["discountPercent"] / 100)
        data["amountExcludingTax"] = money(gross - data["discountAmount"])
        data["taxPercent"] = company.vat_percent if data["lineType"] in ("Item", "Account") else 0
        data["taxCode"] = data["taxCode"] or ("VAT20" if data["taxPercent"] else "")

    def recalc(self, company: Company, set_name: str, header: Row, *, report: bool = True) -> None:
        """Spread the invoice discount over the lines and recompute the totals; with `report` the header
        counts as modified (new ETag, `lastModifiedDateTime`, an `updated` change)."""
        line_set = LINES[set_name]
        lines = company.sets[line_set].children(header.id)
        base = sum(line.data["amountExcludingTax"] for line in lines)
        discount = min(header.data["discountAmount"], base) if base > 0 else 0
        left = discount
        for index, line in enumerate(lines):
            d = line.data
            share = (
                left
                if index == len(lines) - 1
                else money(discount * d["amountExcludingTax"] / base)
                if base
                else 0
            )
            left = money(left - share)
            net = money(d["amountExcludingTax"] - share)
            tax = money(net * d["taxPercent"] / 100)
            d.update(
                invoiceDiscountAllocation=share,
                netAmount=net,
                netTaxAmount=tax,
                netAmountIncludingTax=money(net + tax),
                totalTaxAmount=tax,
                amountIncludingTax=money(net + tax),
                discountAppliedBeforeTax=True,
            )
        totals = {
            "totalAmountExcludingTax": money(sum(line.data["netAmount"] for line in lines)),
            "totalTaxAmount": money(sum(line.data["netTaxAmount"] for line in lines)),
            "totalAmountIncludingTax": money(sum(line.data["netAmountIncludingTax"] for line in lines)),
            "discountAppliedBeforeTax": True,
        }
        if set_name == "salesOrders":
            goods = [line.data for line in lines if line.data["lineType"] != "Comment"]
            totals["fullyShipped"] = bool(goods) and all(d["shippedQuantity"] >= d["quantity"] for d in goods)
        elif header.data["status"] != "Draft":
            totals["remainingAmount"] = totals["totalAmountIncludingTax"]
        changes = {k: v for k, v in totals.items() if k in header.data and header.data[k] != v}
        if report:
            self.store.modify(company, set_name, header, changes)
        else:
            header.data.update(changes)

    # ---- posting ---------------------------------------------------------------------------------

    def post_shipment(
        self, company: Company, order: Row | None, customer_number: str | None, lines: list[dict[str, Any]]
    ) -> Row:
        """Post a sales shipment: from an order (its lines' `shipQuantity`, or `lines` as
        [{"sequence", "quantity"}]; comment lines come along) or ad hoc for a customer (`lines` as
        [{"itemNumber", "quantity"}]). The shipment has an id of its own and the order's number."""
        with self.store.transaction():
            header = SALES_SHIPMENT.blank()
            if order is not None:
                source = {k: v for k, v in order.data.items() if k in header and k != "id"}
                terms = company.sets["paymentTerms"].get(order.data["paymentTermsId"])
                header.update(source, orderNumber=order.data["number"], invoiceDate=order.data["orderDate"],
                              paymentTermsCode=terms.data["code"] if terms else "")
                ship = self._order_quantities(company, order, lines, "shipQuantity", "shippedQuantity")
            else:
                customer = self._customer(company, customer_number)
                header.update(
                    customerId=customer.id,
                    customerNumber=customer.data["number"],
                    customerName=customer.data["displayName"],
                    billToCustomerId=customer.id,
                    billToCustomerNumber=customer.data["number"],
                    billToName=customer.data["displayName"],
                    shipToName=customer.data["displayName"],
                    currencyCode=customer.data["currencyCode"],
                    invoiceDate=self._today(),
                )
                ship = [
                    (self._adhoc_line(company, spec, index), spec.get("quantity", 1))
                    for index, spec in enumerate(lines)
                ]
            if not ship:
                raise dialog("There is nothing to post.")
            header.update(
                number=self.store.next_number(company, "S-SHPT", 102001),
                postingDate=self._today(),
                dueDate=self._today(),
            )
            row = self.store.insert(company, "salesShipments", header)
            for line, quantity in self._with_comments(company, order, ship):
                self._ship_line(company, row, line, quantity)
            if order is not None:
                self._advance_order(company, order, ship, "shippedQuantity", "shipQuantity")
            self.raise_after_commit(company, "SalesShipmentPosted", {"SalesShipmentId": row.id},
                                     "salesShipments", row.id)
            return row

    def post_invoice(
        self, company: Company, order: Row | None, customer_number: str | None, lines: list[dict[str, Any]]
    ) -> Row:
        """Post a sales invoice: from an order (shipped, not yet invoiced quantities, or `lines` as
        [{"sequence", "quantity"}]; comment lines come along, and the header's external document
        number, addresses and terms) or ad hoc (`lines` as [{"itemNumber"|"accountNumber", "quantity",
        "unitPrice"?}]). A fully shipped and invoiced order is deleted, like BC does."""
        with self.store.transaction():
            if order is not None:
                values = {name: order.data[name] for name in _INVOICE_FROM_ORDER}
                bill = self._order_quantities(
                    company, order, lines, "invoiceQuantity", "invoicedQuantity", cap_field="shippedQuantity"
                )
            else:
                customer = self._customer(company, customer_number)
                values = {"customerId": customer.id}
                bill = [
                    (self._adhoc_line(company, spec, index), spec.get("quantity", 1))
                    for index, spec in enumerate(lines)
                ]
            if not bill:
                raise dialog("There is nothing to post.")
            invoice = self.create(company, "salesInvoices", values, {})
            for line, quantity in self._with_comments(company, order, bill):
                body = {
                    k: line[k]
                    for k in (
                        "sequence",
                        "lineType",
                        "lineObjectNumber",
                        "description",
                        "unitPrice",
                        "discountPercent",
                        "itemVariantId",
                        "unitOfMeasureCode",
                    )
                    if k in line
                }
                self.create_line(
                    company, "salesInvoiceLines", body | {"quantity": quantity}, invoice, recalc=False
                )
            posted = {"status": "Open", "number": self.store.next_number(company, "PS-INV", 103001)}
            if order is not None:
                posted.update(orderNumber=order.data["number"], orderId=order.id)
                self._advance_order(company, order, bill, "invoicedQuantity", "invoiceQuantity")
                if self._fully_posted(company, order):
                    self.delete(company, "salesOrders", order)
                    posted["orderId"] = EMPTY_GUID
            invoice.data.update(posted)
            self.recalc(company, "salesInvoices", invoice, report=False)
            self._invoice_posted(company, invoice)
        return invoice

    def _invoice_posted(self, company: Company, invoice: Row) -> None:
        self.raise_after_commit(company, "SalesInvoicePosted",
                                 {"SalesInvoiceAPIId": invoice.id, "SalesInvoiceSystemId": invoice.id},
                                 "salesInvoices", invoice.id)

    def post_draft(self, company: Company, invoice: Row) -> None:
        """`Microsoft.NAV.post` on a draft invoice: the same id (the aggregate keeps the draft's id),
        a posted number, status `Open`, an `updated` change; then SalesInvoicePosted."""
        with self.store.transaction():
            if invoice.data["status"] != "Draft":
                raise dialog("The action can be applied to a draft invoice only.")
            lines = company.sets["salesInvoiceLines"].children(invoice.id)
            if not any(line.data["lineType"] != "Comment" and line.data["quantity"] for line in lines):
                raise dialog("There is nothing to post because the document does not contain a quantity "
                             "or amount.")
            number = self.store.next_number(company, "PS-INV", 103001)
            self.store.modify(company, "salesInvoices", invoice, {"status": "Open", "number": number})
            self.recalc(company, "salesInvoices", invoice, report=False)
            self._invoice_posted(company, invoice)

    def ship_and_invoice(self, company: Company, order: Row) -> None:
        """`Microsoft.NAV.shipAndInvoice` on a sales order: post the shipment and the invoice of what is
        left to ship (one transaction, as Sales-Post does with Ship and Invoice set)."""
        with self.store.transaction():
            if any(line.data["shipQuantity"] for line in company.sets["salesOrderLines"].children(order.id)):
                self.post_shipment(company, order, None, [])
            self.post_invoice(company, order, None, [])

    def _customer(self, company: Company, number: str | None) -> Row:
        customer = company.sets["customers"].by_number(number or "")
        if customer is None:
            raise record_not_found("Customer", f"No.='{number}'")
        return customer

    def _adhoc_line(self, company: Company, spec: dict[str, Any], index: int) -> dict[str, Any]:
        if spec.get("accountNumber"):
            account = company.sets["accounts"].by_number(spec["accountNumber"])
            if account is None:
                raise record_not_found("G/L Account", f"No.='{spec['accountNumber']}'")
            return {
                "sequence": 10000 * (index + 1),
                "lineType": "Account",
                "lineObjectNumber": account.data["number"],
                "description": account.data["displayName"],
                "unitPrice": spec.get("unitPrice", 0),
            }
        item = company.sets["items"].by_number(spec.get("itemNumber", ""))
        if item is None:
            raise record_not_found("Item", f"No.='{spec.get('itemNumber')}'")
        return {
            "sequence": 10000 * (index + 1),
            "lineType": "Item",
            "lineObjectNumber": item.data["number"],
            "description": item.data["displayName"],
            "unitPrice": spec.get("unitPrice", item.data["unitPrice"]),
            "unitOfMeasureCode": item.data["baseUnitOfMeasureCode"],
            "itemId": item.id,
            "itemVariantId": spec.get("itemVariantId", EMPTY_GUID),
        }

    def _order_quantities(
        self,
        company: Company,
        order: Row,
        lines: list[dict[str, Any]],
        todo_field: str,
        done_field: str,
        cap_field: str = "quantity",
    ) -> list[tuple[dict[str, Any], float]]:
        wanted = {spec["sequence"]: spec["quantity"] for spec in lines}
        result = []
        for line in company.sets["salesOrderLines"].children(order.id):
            d = line.data
            if d["lineType"] == "Comment":
                continue
            open_quantity = d[cap_field] - d[done_field]
            quantity = wanted.get(d["sequence"], 0 if lines else min(d[todo_field], open_quantity))
            if quantity > open_quantity:
                raise dialog(f"You cannot post more than {open_quantity} on line {d['sequence']}.")
            if quantity:
                result.append((d, quantity))
        return result

    def _with_comments(
        self, company: Company, order: Row | None, posted: list[tuple[dict[str, Any], float]]
    ) -> list[tuple[dict[str, Any], float]]:
        """The posted lines with the order's comment lines among them, in sequence order."""
        if order is None:
            return posted
        comments = [
            (line.data, 0.0)
            for line in company.sets["salesOrderLines"].children(order.id)
            if line.data["lineType"] == "Comment"
        ]
        return sorted(posted + comments, key=lambda pair: pair[0]["sequence"])

    def _ship_line(self, company: Company, shipment: Row, line: dict[str, Any], quantity: float) -> None:
        line_type = SHIPMENT_LINE_TYPES[line["lineType"]]
        data = SALES_SHIPMENT_LINE.blank()
        data.update({k: line[k] for k in data if k in line and k != "id"})
        data.update(
            documentId=shipment.id,
            documentNo=shipment.data["number"],
            lineType=line_type,
            quantity=quantity,
            shipmentDate=shipment.data["postingDate"],
            taxPercent=company.vat_percent if line_type == "Item" else 0,
        )
        self.store.insert(company, "salesShipmentLines", data)
        item = (
            company.sets["items"].by_number(line["lineObjectNumber"]) if line["lineType"] == "Item" else None
        )
        if item is not None:
            item.data["inventory"] -= quantity  # a FlowField: the Item record itself does not change
            self._item_ledger_entry(company, shipment, item, data, -quantity)

    def _item_ledger_entry(
        self, company: Company, shipment: Row, item: Row, line: dict[str, Any], quantity: float
    ) -> None:
        """The Item Ledger Entry a posted shipment line writes (codeunit 22 "Item Jnl.-Post Line"): a
        negative `Sale` entry per item line, numbered in one series per company."""
        entries = company.sets["itemLedgerEntries"]
        data = ITEM_LEDGER_ENTRY.blank()
        data.update(
            entryNumber=len(entries) + 1,
            itemNumber=item.data["number"],
            postingDate=shipment.data["postingDate"],
            entryType="Sale",
            sourceType="Customer",
            sourceNumber=shipment.data["customerNumber"],
            documentType="Sales_x0020_Shipment",
            documentNumber=shipment.data["number"],
            description=line["description"],
            quantity=quantity,
            costAmountActual=money(quantity * item.data["unitCost"]),
        )
        self.store.insert(company, "itemLedgerEntries", data)

    def _advance_order(
        self,
        company: Company,
        order: Row,
        posted: list[tuple[dict[str, Any], float]],
        done_field: str,
        todo_field: str,
    ) -> None:
        lines = {line.data["sequence"]: line for line in company.sets["salesOrderLines"].children(order.id)}
        for data, quantity in posted:
            line = lines[data["sequence"]]
            done = line.data[done_field] + quantity
            self.store.modify(
                company,
                "salesOrderLines",
                line,
                {done_field: done, todo_field: line.data["quantity"] - done},
                report=False,
            )
        self.recalc(company, "salesOrders", order, report=False)
        self.store.modify(company, "salesOrders", order, {})

    def _fully_posted(self, company: Company, order: Row) -> bool:
        return all(
            line.data["invoicedQuantity"] >= line.data["quantity"]
            for line in company.sets["salesOrderLines"].children(order.id)
        )


def _party(parties: EntitySet, values: dict[str, Any], kind: str, *, unknown_id: Exception,
           unknown_number: Callable[[str], Exception], mismatch: Exception) -> Row:
    """The customer or vendor a document names by `<kind>Id` and/or `<kind>Number` (both: the same one),
    with BC's error for each way it can be wrong."""
    by_id = by_number = None
    if values.get(f"{kind}Id", EMPTY_GUID) != EMPTY_GUID:
        by_id = parties.get(values[f"{kind}Id"])
        if by_id is None:
            raise unknown_id
    if values.get(f"{kind}Number"):
        by_number = parties.by_number(values[f"{kind}Number"])
        if by_number is None:
            raise unknown_number(values[f"{kind}Number"])
    if by_id and by_number and by_id is not by_number:
        raise mismatch
    party = by_id or by_number
    if party is None:
        raise dialog(f'A "{kind}Number" or a "{kind}Id" must be provided.')
    return party
