"""Entity types of the BC API v2.0 emulator (dev tooling, never deployed): field lists, types and
read-only markings from the AL source (bc-api.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devtools.emulator.odata import EMPTY_GUID

DEFAULTS: dict[str, Any] = {
    "guid": EMPTY_GUID,
    "string": "",
    "date": "0001-01-01",
    "datetime": "0001-01-01T00:00:00Z",
    "decimal": 0,
    "int": 0,
    "bool": False,
}


@dataclass(frozen=True)
class EntityType:
    """One API page: its entity set, fields (ordered, with types) and write rules."""

    set_name: str
    type_name: str  # Microsoft.NAV.<type_name>
    label: str  # table caption used in BC error messages
    fields: dict[str, str]
    read_only: frozenset[str] = frozenset()
    create_only: frozenset[str] = frozenset()
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    parts: dict[str, str] = field(default_factory=dict)  # navigation -> child entity set
    parent_field: str | None = None  # on child sets: the field linking to the parent
    writable: bool = True  # False: read-only page (GET only)
    temporary: bool = False  # the page's source table is temporary (lines of orders and invoices)
    route: str = "v2.0"  # the API route serving the page: `v2.0` or `publisher/group/version`

    def blank(self) -> dict[str, Any]:
        """A new entity dict with every field at its BC default."""
        return {name: DEFAULTS[ftype] for name, ftype in self.fields.items()}


def _fields(spec: str) -> dict[str, str]:
    """`"id:guid number displayName:decimal"` → ordered field types (default string)."""
    out = {}
    for item in spec.split():
        name, _, ftype = item.partition(":")
        out[name] = ftype or "string"
    return out


def names(spec: str) -> frozenset[str]:
    """`"a b c"` → frozenset of names."""
    return frozenset(spec.split())


_ADDR = "AddressLine1 AddressLine2 City Country State PostCode"
SELL_TO = " ".join("sellTo" + a for a in _ADDR.split())
BILL_TO = " ".join("billTo" + a for a in _ADDR.split())
SHIP_TO = " ".join("shipTo" + a for a in _ADDR.split())
LINE_TYPES = (
    "Comment",
    "Account",
    "Item",
    "Resource",
    "Fixed_x0020_Asset",
    "Charge",
    "Allocation_x0020_Account",
)
LINE_FIELDS = (
    "id:guid documentId:guid sequence:int itemId:guid accountId:guid lineType lineObjectNumber description "
    "description2 unitOfMeasureId:guid unitOfMeasureCode quantity:decimal unitPrice:decimal "
    "discountAmount:decimal "
    "discountPercent:decimal discountAppliedBeforeTax:bool amountExcludingTax:decimal taxCode "
    "taxPercent:decimal "
    "totalTaxAmount:decimal amountIncludingTax:decimal invoiceDiscountAllocation:decimal netAmount:decimal "
    "netTaxAmount:decimal netAmountIncludingTax:decimal shipmentDate:date {extra} itemVariantId:guid "
    "locationId:guid"
)
LINE_RO = names(
    "id discountAppliedBeforeTax amountExcludingTax taxPercent totalTaxAmount amountIncludingTax "
    "invoiceDiscountAllocation netAmount netTaxAmount netAmountIncludingTax"
)
LINE_CREATE_ONLY = frozenset({"documentId", "sequence", "lineObjectNumber"})
TOTALS = "totalAmountExcludingTax:decimal totalTaxAmount:decimal totalAmountIncludingTax:decimal"

COMPANY = EntityType(
    "companies",
    "company",
    "Company",
    _fields(
        "id:guid systemVersion timestamp:int name displayName businessProfileId systemCreatedAt:datetime "
        "systemCreatedBy:guid systemModifiedAt:datetime systemModifiedBy:guid"
    ),
    writable=False,
)
CUSTOMER = EntityType(
    "customers",
    "customer",
    "Customer",
    _fields(
        "id:guid number displayName type addressLine1 addressLine2 city state country postalCode phoneNumber "
        "email website salespersonCode balanceDue:decimal creditLimit:decimal taxLiable:bool taxAreaId:guid "
        "taxAreaDisplayName taxRegistrationNumber currencyId:guid currencyCode paymentTermsId:guid "
        "shipmentMethodId:guid paymentMethodId:guid blocked lastModifiedDateTime:datetime"
    ),
    read_only=frozenset({"id", "balanceDue", "taxAreaDisplayName", "lastModifiedDateTime"}),
    enums={"type": ("Company", "Person"), "blocked": ("_x0020_", "Ship", "Invoice", "All")},
)
CURRENCY = EntityType(
    "currencies",
    "currency",
    "Currency",
    _fields(
        "id:guid code displayName symbol amountDecimalPlaces amountRoundingPrecision:decimal "
        "lastModifiedDateTime:datetime"
    ),
    read_only=frozenset({"id", "lastModifiedDateTime"}),
)
PAYMENT_TERM = EntityType(
    "paymentTerms",
    "paymentTerm",
    "Payment Terms",
    _fields(
        "id:guid code displayName dueDateCalculation discountDateCalculation discountPercent:decimal "
        "calculateDiscountOnCreditMemos:bool lastModifiedDateTime:datetime"
    ),
    read_only=frozenset({"id", "lastModifiedDateTime"}),
)
ACCOUNT = EntityType(
    "accounts",
    "account",
    "G/L Account",
    _fields(
        "id:guid number displayName category subCategory blocked:bool accountType directPosting:bool "
        "netChange:decimal consolidationTranslationMethod consolidationDebitAccount "
        "consolidationCreditAccount "
        "excludeFromConsolidation:bool lastModifiedDateTime:datetime"
    ),
    writable=False,
)
ITEM = EntityType(
    "items",
    "item",
    "Item",
    _fields(
        "id:guid number displayName displayName2 type itemCategoryId:guid itemCategoryCode blocked:bool gtin "
        "inventory:decimal unitPrice:decimal priceIncludesTax:bool unitCost:decimal taxGroupId:guid "
        "taxGroupCode "
        "baseUnitOfMeasureId:guid baseUnitOfMeasureCode generalProductPostingGroupId:guid "
        "generalProductPostingGroupCode inventoryPostingGroupId:guid inventoryPostingGroupCode "
        "lastModifiedDateTime:datetime"
    ),
    read_only=frozenset({"id", "lastModifiedDateTime"}),
    enums={"type": ("Inventory", "Service", "Non_x002D_Inventory")},
    parts={"itemVariants": "itemVariants"},
)
ITEM_VARIANT = EntityType(
    "itemVariants",
    "itemVariant",
    "Item Variant",
    _fields("id:guid itemId:guid itemNumber code description lastModifiedDateTime:datetime"),
    read_only=frozenset({"id", "lastModifiedDateTime"}),
    parent_field="itemId",
)
SALES_ORDER = EntityType(
    "salesOrders",
    "salesOrder",
    "Sales Header",
    _fields(
        f"id:guid number externalDocumentNumber orderDate:date postingDate:date customerId:guid "
        f"customerNumber "
        f"customerName billToName billToCustomerId:guid billToCustomerNumber shipToName shipToContact "
        f"{SELL_TO} "
        f"{BILL_TO} {SHIP_TO} shortcutDimension1Code shortcutDimension2Code currencyId:guid currencyCode "
        f"pricesIncludeTax:bool paymentTermsId:guid shipmentMethodId:guid salesperson partialShipping:bool "
        f"requestedDeliveryDate:date discountAmount:decimal discountAppliedBeforeTax:bool {TOTALS} "
        f"fullyShipped:bool status lastModifiedDateTime:datetime phoneNumber email"
    ),
    read_only=names(
        f"id number customerName billToName {BILL_TO} discountAppliedBeforeTax totalAmountExcludingTax "
        "totalTaxAmount totalAmountIncludingTax fullyShipped status lastModifiedDateTime"
    ),
    parts={"salesOrderLines": "salesOrderLines"},
)
SALES_ORDER_LINE = EntityType(
    "salesOrderLines",
    "salesOrderLine",
    "Sales Line",
    _fields(
        LINE_FIELDS.format(
            extra="shippedQuantity:decimal invoicedQuantity:decimal invoiceQuantity:decimal "
            "shipQuantity:decimal"
        )
    ),
    read_only=LINE_RO | {"shippedQuantity", "invoicedQuantity"},
    create_only=LINE_CREATE_ONLY,
    enums={"lineType": LINE_TYPES},
    parent_field="documentId",
    temporary=True,
)
SALES_SHIPMENT = EntityType(
    "salesShipments",
    "salesShipment",
    "Sales Shipment Header",
    _fields(
        f"id:guid number externalDocumentNumber invoiceDate:date postingDate:date dueDate:date "
        f"customerPurchaseOrderReference customerId:guid customerNumber customerName billToCustomerId:guid "
        f"billToName billToCustomerNumber shipToName shipToContact {SELL_TO} {BILL_TO} {SHIP_TO} "
        f"currencyCode "
        f"orderNumber paymentTermsCode shipmentMethodCode salesperson pricesIncludeTax:bool "
        f"lastModifiedDateTime:datetime phoneNumber email"
    ),
    parts={"salesShipmentLines": "salesShipmentLines"},
    writable=False,
)
SALES_SHIPMENT_LINE = EntityType(
    "salesShipmentLines",
    "salesShipmentLine",
    "Sales Shipment Line",
    _fields(
        "id:guid documentId:guid documentNo sequence:int lineType lineObjectNumber description description2 "
        "unitOfMeasureCode unitPrice:decimal quantity:decimal discountPercent:decimal taxPercent:decimal "
        "shipmentDate:date"
    ),
    parent_field="documentId",
    writable=False,
)
SALES_INVOICE = EntityType(
    "salesInvoices",
    "salesInvoice",
    "Sales Header",
    _fields(
        f"id:guid number externalDocumentNumber invoiceDate:date postingDate:date dueDate:date "
        f"promisedPayDate:date customerPurchaseOrderReference customerId:guid customerNumber customerName "
        f"billToName billToCustomerId:guid billToCustomerNumber shipToName shipToContact {SELL_TO} {BILL_TO} "
        f"{SHIP_TO} currencyId:guid shortcutDimension1Code shortcutDimension2Code currencyCode orderId:guid "
        f"orderNumber paymentTermsId:guid shipmentMethodId:guid salesperson disputeStatusId:guid "
        f"disputeStatus "
        f"pricesIncludeTax:bool remainingAmount:decimal discountAmount:decimal discountAppliedBeforeTax:bool "
        f"{TOTALS} status lastModifiedDateTime:datetime phoneNumber email"
    ),
    read_only=names(
        f"id number customerName billToName {BILL_TO} orderId orderNumber pricesIncludeTax "
        "remainingAmount discountAppliedBeforeTax totalAmountExcludingTax totalTaxAmount "
        "totalAmountIncludingTax status lastModifiedDateTime"
    ),
    parts={"salesInvoiceLines": "salesInvoiceLines"},
)
SALES_INVOICE_LINE = EntityType(
    "salesInvoiceLines",
    "salesInvoiceLine",
    "Sales Line",
    _fields(LINE_FIELDS.format(extra="")),
    read_only=LINE_RO,
    create_only=LINE_CREATE_ONLY,
    enums={"lineType": LINE_TYPES},
    parent_field="documentId",
    temporary=True,
)
VENDOR = EntityType(  # page 30010 "APIV2 - Vendors", source table Vendor
    "vendors",
    "vendor",
    "Vendor",
    _fields(
        "id:guid number displayName addressLine1 addressLine2 city state country postalCode phoneNumber "
        "email website taxRegistrationNumber currencyId:guid currencyCode irs1099Code paymentTermsId:guid "
        "paymentMethodId:guid taxLiable:bool blocked balance:decimal lastModifiedDateTime:datetime"
    ),
    read_only=frozenset({"id", "balance", "lastModifiedDateTime"}),
    enums={"blocked": ("_x0020_", "Payment", "All")},
)
ITEM_LEDGER_ENTRY = EntityType(  # page 30069 "APIV2 - Item Ledger Entries": read-only, written by postings
    "itemLedgerEntries",
    "itemLedgerEntry",
    "Item Ledger Entry",
    _fields(
        "id:guid entryNumber:int itemNumber postingDate:date entryType sourceNumber sourceType "
        "documentNumber documentType description quantity:decimal salesAmountActual:decimal "
        "costAmountActual:decimal lastModifiedDateTime:datetime"
    ),
    writable=False,
)
SALES_QUOTE = EntityType(  # page 30037 "APIV2 - Sales Quotes", source "Sales Quote Entity Buffer"
    "salesQuotes",
    "salesQuote",
    "Sales Header",
    _fields(
        f"id:guid number externalDocumentNumber documentDate:date postingDate:date dueDate:date "
        f"customerId:guid customerNumber customerName billToName billToCustomerId:guid billToCustomerNumber "
        f"shipToName shipToContact {SELL_TO} {BILL_TO} {SHIP_TO} currencyId:guid currencyCode "
        f"paymentTermsId:guid shipmentMethodId:guid salesperson discountAmount:decimal {TOTALS} status "
        f"sentDate:datetime validUntilDate:date acceptedDate:date lastModifiedDateTime:datetime "
        f"phoneNumber email"
    ),
    read_only=names(
        "id number customerName billToName totalAmountExcludingTax totalTaxAmount totalAmountIncludingTax "
        "status lastModifiedDateTime"
    ),
    parts={"salesQuoteLines": "salesQuoteLines"},
)
SALES_QUOTE_LINE = EntityType(  # page 30045 "APIV2 - Sales Quote Lines" (temporary source)
    "salesQuoteLines",
    "salesQuoteLine",
    "Sales Line",
    _fields(LINE_FIELDS.format(extra="")),
    read_only=LINE_RO,
    create_only=LINE_CREATE_ONLY,
    enums={"lineType": LINE_TYPES},
    parent_field="documentId",
    temporary=True,
)
SALES_CREDIT_MEMO = EntityType(  # page 30038 "APIV2 - Sales Credit Memos" ("Sales Cr. Memo Entity Buffer")
    "salesCreditMemos",
    "salesCreditMemo",
    "Sales Header",
    _fields(
        f"id:guid number externalDocumentNumber creditMemoDate:date postingDate:date dueDate:date "
        f"customerId:guid customerNumber customerName billToName billToCustomerId:guid billToCustomerNumber "
        f"{SELL_TO} {BILL_TO} currencyId:guid currencyCode paymentTermsId:guid shipmentMethodId:guid "
        f"salesperson pricesIncludeTax:bool discountAmount:decimal discountAppliedBeforeTax:bool {TOTALS} "
        f"status lastModifiedDateTime:datetime invoiceId:guid invoiceNumber phoneNumber email "
        f"customerReturnReasonId:guid"
    ),
    read_only=names(
        "id number customerName billToName pricesIncludeTax discountAppliedBeforeTax totalAmountExcludingTax "
        "totalTaxAmount totalAmountIncludingTax status lastModifiedDateTime"
    ),
    parts={"salesCreditMemoLines": "salesCreditMemoLines"},
)
SALES_CREDIT_MEMO_LINE = EntityType(  # "APIV2 - Sales Credit Mem Lines" (temporary source)
    "salesCreditMemoLines",
    "salesCreditMemoLine",
    "Sales Line",
    _fields(LINE_FIELDS.format(extra="")),
    read_only=LINE_RO,
    create_only=LINE_CREATE_ONLY,
    enums={"lineType": LINE_TYPES},
    parent_field="documentId",
    temporary=True,
)
BUY_FROM = " ".join("buyFrom" + a for a in _ADDR.split())
PAY_TO = " ".join("payTo" + a for a in _ADDR.split())
PURCHASE_ORDER = EntityType(  # page 30066 "APIV2 - Purchase Orders", source "Purchase Order Entity Buffer"
    "purchaseOrders",
    "purchaseOrder",
    "Purchase Header",
    _fields(
        f"id:guid number orderDate:date postingDate:date vendorId:guid vendorNumber vendorName payToName "
        f"payToVendorId:guid payToVendorNumber shipToName shipToContact {BUY_FROM} {PAY_TO} {SHIP_TO} "
        f"shortcutDimension1Code shortcutDimension2Code currencyId:guid currencyCode pricesIncludeTax:bool "
        f"paymentTermsId:guid shipmentMethodId:guid purchaser requestedReceiptDate:date "
        f"discountAmount:decimal discountAppliedBeforeTax:bool {TOTALS} fullyReceived:bool status "
        f"lastModifiedDateTime:datetime"
    ),
    read_only=names(
        f"id number vendorName payToName {PAY_TO} discountAppliedBeforeTax totalAmountExcludingTax "
        "totalTaxAmount totalAmountIncludingTax status lastModifiedDateTime"
    ),
    parts={"purchaseOrderLines": "purchaseOrderLines"},
)
PURCHASE_ORDER_LINE = EntityType(  # page 30067 "APIV2 - Purchase Order Lines" (temporary source)
    "purchaseOrderLines",
    "purchaseOrderLine",
    "Purchase Line",
    _fields(
        "id:guid documentId:guid sequence:int itemId:guid accountId:guid lineType lineObjectNumber "
        "description unitOfMeasureId:guid unitOfMeasureCode quantity:decimal directUnitCost:decimal "
        "discountAmount:decimal discountPercent:decimal discountAppliedBeforeTax:bool "
        "amountExcludingTax:decimal taxCode taxPercent:decimal totalTaxAmount:decimal "
        "amountIncludingTax:decimal invoiceDiscountAllocation:decimal "
        "netAmount:decimal netTaxAmount:decimal netAmountIncludingTax:decimal expectedReceiptDate:date "
        "receivedQuantity:decimal invoicedQuantity:decimal invoiceQuantity:decimal receiveQuantity:decimal "
        "itemVariantId:guid locationId:guid"
    ),
    read_only=LINE_RO,
    create_only=LINE_CREATE_ONLY,
    enums={"lineType": LINE_TYPES},
    parent_field="documentId",
    temporary=True,
)
# A custom API page of a fictitious partner: `api/contoso/shop/v1.0/companies({id})/webOrders`, a
# normal table with SystemId as its key (so BC's webhooks accept it, WebhookSupportedResources.Page.al).
WEB_ORDER = EntityType(
    "webOrders",
    "webOrder",
    "Contoso Web Order",
    _fields("id:guid number customerNumber channel status amount:decimal lastModifiedDateTime:datetime"),
    read_only=frozenset({"id", "number", "lastModifiedDateTime"}),
    route="contoso/shop/v1.0",
)

COMPANY_SETS: dict[str, EntityType] = {
    t.set_name: t
    for t in (
        CUSTOMER,
        CURRENCY,
        PAYMENT_TERM,
        ACCOUNT,
        ITEM,
        ITEM_VARIANT,
        SALES_ORDER,
        SALES_ORDER_LINE,
        SALES_SHIPMENT,
        SALES_SHIPMENT_LINE,
        SALES_INVOICE,
        SALES_INVOICE_LINE,
        VENDOR,
        ITEM_LEDGER_ENTRY,
        SALES_QUOTE,
        SALES_QUOTE_LINE,
        SALES_CREDIT_MEMO,
        SALES_CREDIT_MEMO_LINE,
        PURCHASE_ORDER,
        PURCHASE_ORDER_LINE,
        WEB_ORDER,
    )
}
ROUTES = ("v2.0", *sorted({t.route for t in COMPANY_SETS.values()} - {"v2.0"}))  # the apiRoutes listing
LINE_SETS = {name for name, t in COMPANY_SETS.items() if t.temporary}  # need a document id, no webhooks


def route_sets(route: str) -> dict[str, EntityType]:
    """The entity sets an API route serves."""
    return {name: t for name, t in COMPANY_SETS.items() if t.route == route}


def webhook_capable() -> set[str]:
    """Entity sets BC's rule admits to webhooks (WebhookSupportedResources.Page.al): source table
    not temporary, a single key (SystemId on every page here), not a system table (`companies`)."""
    return {name for name, t in COMPANY_SETS.items() if not t.temporary}
