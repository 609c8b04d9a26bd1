"""Seed data of the BC API emulator (dev tooling, never deployed).

Seed "demo": tenant lmints.io; `production` has "CRONUS UK Ltd." and "CRONUS USA, Inc.", every other
environment (e.g. `sandbox`) has one "CRONUS UK Ltd.". Each company has customers (GL00000001-10;
GL00000008 is the web shop customer in GBP, GL00000010 is blocked), GBP/EUR/USD, payment terms, G/L
accounts, 20 items with 0-3 variants, an open sales order, and posted shipments and invoices.
Ids are stable across runs. `bulk_create_items` builds large catalogues for benchmarks.
"""

from __future__ import annotations

import uuid
import zlib
from typing import TYPE_CHECKING

from devtools.emulator.bc_documents import DocumentRules
from devtools.emulator.bc_schema import ACCOUNT as ACCOUNT_TYPE
from devtools.emulator.bc_schema import CURRENCY, CUSTOMER, ITEM, ITEM_VARIANT, PAYMENT_TERM
from devtools.emulator.odata import EMPTY_GUID
from devtools.emulator.store import Company, Row, Store

if TYPE_CHECKING:
    from devtools.emulator.config import EmulatorConfig

TENANT_DOMAIN = "lmints.io"
CRONUS_UK_ID = "8a6b2c1d-3e4f-4a5b-9c6d-7e8f9a0b1c2d"  # production
CRONUS_USA_ID = "1b2c3d4e-5f60-4718-829a-3b4c5d6e7f80"  # production
SANDBOX_COMPANY_ID = "c3d4e5f6-0718-4293-a4b5-c6d7e8f90a1b"  # "CRONUS UK Ltd." in every other environment
CRONUS_UK = "CRONUS UK Ltd."
CRONUS_USA = "CRONUS USA, Inc."
WEBSHOP_CUSTOMER = "GL00000008"  # currencyCode GBP
BLOCKED_CUSTOMER = "GL00000010"  # blocked All
PAYMENT_TERMS_30_DAYS_ID = "3bb5b4b6-ea4c-43ca-ba1c-3b69e29a6668"  # code "30 DAYS", in every company
SALES_ACCOUNT = "6110"
_NS = uuid.UUID("0b6c1f4e-5a3d-4e2f-9b8a-7c6d5e4f3a2b")

CUSTOMERS = [  # number suffix, name, city, currency ("" = LCY), blocked
    (1, "Adatum Corporation", "London", "", ""),
    (2, "Trey Research", "Manchester", "", ""),
    (3, "School of Fine Art", "Edinburgh", "", ""),
    (4, "Alpine Ski House", "Innsbruck", "EUR", ""),
    (5, "Relecloud", "Bristol", "", ""),
    (6, "Coho Winery", "Bordeaux", "EUR", ""),
    (7, "Fabrikam, Inc.", "Atlanta", "USD", ""),
    (8, "LMints Webshop", "Leeds", "GBP", ""),
    (9, "Contoso Ltd.", "Birmingham", "", ""),
    (10, "Blocked Customer Ltd.", "York", "", "All"),
]
CURRENCIES = [("GBP", "British Pound", "£"), ("EUR", "Euro", "€"), ("USD", "US Dollar", "$")]
PAYMENT_TERMS = [
    ("14 DAYS", "Net 14 days", "14D"),
    ("30 DAYS", "Net 30 days", "30D"),
    ("COD", "Cash on delivery", "0D"),
    ("1M(8D)", "1 Month/2% 8 days", "1M"),
]
ACCOUNTS = [
    ("6110", "Sales, Retail - Dom."),
    ("6120", "Sales, Retail - EU"),
    ("6130", "Sales, Retail - Export"),
    ("6410", "Sales, Services"),
    ("6810", "Freight and Shipping"),
]
ITEMS = [  # number, name, price, variants (code, description)
    ("1896-S", "ATHENS Desk", 1000.8, []),
    ("1900-S", "PARIS Guest Chair, black", 192.8, [("BLACK", "Black"), ("GREY", "Grey")]),
    ("1906-S", "ATHENS Mobile Pedestal", 281.4, []),
    ("1908-S", "LONDON Swivel Chair, blue", 190.1, [("BLUE", "Blue"), ("RED", "Red"), ("GREEN", "Green")]),
    ("1920-S", "ANTWERP Conference Table", 649.4, [("OAK", "Oak"), ("WALNUT", "Walnut")]),
    ("1924-W", "CHAMONIX Base Storage Unit", 215.6, []),
    ("1928-S", "AMSTERDAM Lamp", 54.9, [("WHITE", "White"), ("BLACK", "Black"), ("BRASS", "Brass")]),
    ("1936-S", "BERLIN Guest Chair, yellow", 192.8, [("YELLOW", "Yellow")]),
    ("1960-S", "ROME Guest Chair, green", 192.8, [("GREEN", "Green"), ("OLIVE", "Olive")]),
    ("1964-S", "TOKYO Guest Chair, blue", 192.8, []),
    ("1968-S", "MEXICO Swivel Chair, black", 190.1, [("BLACK", "Black"), ("WHITE", "White"), ("RED", "Red")]),
    ("1972-S", "MUNICH Swivel Chair, yellow", 190.1, [("YELLOW", "Yellow")]),
    ("1980-S", "MOSCOW Swivel Chair, red", 190.1, []),
    ("1988-S", "SEOUL Guest Chair, red", 192.8, [("RED", "Red"), ("BLUE", "Blue")]),
    ("1996-S", "ATLANTA Whiteboard, base", 1397.3, []),
    (
        "2000-S",
        "SYDNEY Swivel Chair, green",
        190.1,
        [("GREEN", "Green"), ("GREY", "Grey"), ("BLACK", "Black")],
    ),
    ("1925-W", "Conference Bundle 1-6", 133.0, []),
    ("1929-W", "Conference Bundle 1-8", 158.6, [("S", "Small"), ("L", "Large")]),
    ("1953-W", "Guest Section 1", 125.3, []),
    ("1965-W", "Conference Package 1", 140.4, [("STD", "Standard")]),
]


def stable_id(company: Company, *parts: str) -> str:
    """A deterministic GUID for seeded data of `company`."""
    return str(uuid.uuid5(_NS, "/".join((company.id, *parts))))


def load_seed(store: Store, config: EmulatorConfig, name: str | None) -> None:
    """Create every configured tenant's environments and the demo companies (same ids for any seed);
    seed "demo" fills the companies, None leaves them empty."""
    if name not in ("demo", None):
        raise ValueError(f"unknown seed {name!r}; known: 'demo' or None")
    for tenant_id in config.tenants.values():
        for env in config.environments:
            store.environment(tenant_id, env)
    tenant = config.tenants.get(TENANT_DOMAIN) or next(iter(config.tenants.values()))
    for env in config.environments:
        if env.lower() == "production":
            companies = [(CRONUS_UK_ID, CRONUS_UK, "GBP", 20.0), (CRONUS_USA_ID, CRONUS_USA, "USD", 0.0)]
        else:
            companies = [(SANDBOX_COMPANY_ID, CRONUS_UK, "GBP", 20.0)]
        for company_id, company_name, lcy, vat in companies:
            company = store.add_company(tenant, env, company_name, company_id, lcy_code=lcy, vat_percent=vat)
            if name == "demo":
                with store.transaction():
                    seed_company(store, company)


def seed_company(store: Store, company: Company) -> None:
    """Master data, items with variants and some sales documents for one company."""
    ids: dict[str, str] = {}
    for code, name, symbol in CURRENCIES:
        row = store.insert(
            company,
            "currencies",
            CURRENCY.blank()
            | {
                "id": stable_id(company, "currency", code),
                "code": code,
                "displayName": name,
                "symbol": symbol,
                "amountDecimalPlaces": "2:2",
                "amountRoundingPrecision": 0.01,
            },
        )
        ids[code] = row.id
    for code, name, formula in PAYMENT_TERMS:
        terms_id = PAYMENT_TERMS_30_DAYS_ID if code == "30 DAYS" else stable_id(company, "terms", code)
        store.insert(
            company,
            "paymentTerms",
            PAYMENT_TERM.blank()
            | {
                "id": terms_id,
                "code": code,
                "displayName": name,
                "dueDateCalculation": formula,
                "discountDateCalculation": "8D" if code == "1M(8D)" else "",
                "discountPercent": 2 if code == "1M(8D)" else 0,
            },
        )
    for number, name in ACCOUNTS:
        store.insert(
            company,
            "accounts",
            ACCOUNT_TYPE.blank()
            | {
                "id": stable_id(company, "account", number),
                "number": number,
                "displayName": name,
                "category": "Income",
                "subCategory": "Income, Product Sales",
                "accountType": "Posting",
                "directPosting": True,
            },
        )
    for suffix, name, city, currency, blocked in CUSTOMERS:
        number = f"GL{suffix:08d}"
        code = currency or company.lcy_code
        store.insert(
            company,
            "customers",
            CUSTOMER.blank()
            | {
                "id": stable_id(company, "customer", number),
                "number": number,
                "displayName": name,
                "type": "Company",
                "addressLine1": f"{suffix} Market Street",
                "city": city,
                "country": "GB" if not currency else "",
                "postalCode": f"AB{suffix} 1CD",
                "phoneNumber": f"+44 20 7946 0{suffix:03d}",
                "email": f"orders@{name.split()[0].lower().strip(',')}.example",
                "currencyCode": code,
                "currencyId": EMPTY_GUID if code == company.lcy_code else ids[code],
                "paymentTermsId": PAYMENT_TERMS_30_DAYS_ID,
                "blocked": blocked or "_x0020_",
                "creditLimit": 10000,
            },
        )
    company.series["GL"] = len(CUSTOMERS) + 1
    for index, (number, name, price, variants) in enumerate(ITEMS):
        item = _seed_item(store, company, number, name, price, 50 + 10 * index)
        for code, description in variants:
            store.insert(
                company,
                "itemVariants",
                ITEM_VARIANT.blank()
                | {
                    "id": stable_id(company, "variant", number, code),
                    "itemId": item.id,
                    "itemNumber": number,
                    "code": code,
                    "description": f"{name.split(',')[0]}, {description}",
                },
            )
    _seed_documents(store, company)


def _seed_item(store: Store, company: Company, number: str, name: str, price: float, stock: float) -> Row:
    return store.insert(
        company,
        "items",
        ITEM.blank()
        | {
            "id": stable_id(company, "item", number),
            "number": number,
            "displayName": name,
            "type": "Inventory",
            "inventory": stock,
            "unitPrice": price,
            "unitCost": round(price * 0.6, 2),
            "baseUnitOfMeasureCode": "PCS",
            "generalProductPostingGroupCode": "RETAIL",
            "inventoryPostingGroupCode": "RESALE",
            "gtin": f"50{zlib.crc32(number.encode()) % 10**11:011d}",
            "taxGroupCode": "FURNITURE",
        },
    )


def _seed_documents(store: Store, company: Company) -> None:
    documents = DocumentRules(store)
    customer = company.sets["customers"].by_number("GL00000001")
    if customer is None:
        raise KeyError("the seed's documents need customer GL00000001, seeded first")
    first = documents.create(
        company,
        "salesOrders",
        {"customerId": customer.id, "externalDocumentNumber": "SEED-1001"},
        {
            "salesOrderLines": [
                {"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 2},
                {
                    "lineType": "Item",
                    "lineObjectNumber": "1908-S",
                    "quantity": 4,
                    "itemVariantId": stable_id(company, "variant", "1908-S", "RED"),
                },
            ]
        },
    )
    documents.post_shipment(company, first, None, [])
    documents.post_invoice(company, first, None, [])  # fully posted: the order is deleted
    second = documents.create(
        company,
        "salesOrders",
        {"customerNumber": "GL00000002", "externalDocumentNumber": "SEED-1002"},
        {
            "salesOrderLines": [
                {"lineType": "Item", "lineObjectNumber": "1920-S", "quantity": 3},
                {"lineType": "Comment", "description": "Deliver to the back door"},
                {"lineType": "Account", "lineObjectNumber": "6810", "quantity": 1, "unitPrice": 25},
            ]
        },
    )
    documents.post_shipment(company, second, None, [{"sequence": 10000, "quantity": 1}])
    documents.post_invoice(
        company, None, "GL00000003", [{"accountNumber": SALES_ACCOUNT, "quantity": 1, "unitPrice": 150.0}]
    )
    documents.create(
        company,
        "salesOrders",
        {"customerNumber": WEBSHOP_CUSTOMER, "externalDocumentNumber": "SEED-1003"},
        {"salesOrderLines": [{"lineType": "Item", "lineObjectNumber": "1928-S", "quantity": 5}]},
    )


def bulk_create_items(
    store: Store, company: Company, count: int, variants_per_item: int = 0, prefix: str = "BULK"
) -> list[str]:
    """Create `count` items with `variants_per_item` variants each, fast (100,000 × 3 in a few seconds).
    Returns the new item ids. Changes are recorded for webhooks like any other insert."""
    at = store.now()
    item_blank = ITEM.blank() | {
        "type": "Inventory",
        "baseUnitOfMeasureCode": "PCS",
        "unitPrice": 10.0,
        "inventory": 100,
    }
    variant_blank = ITEM_VARIANT.blank()
    start = company.series.get(prefix, 1)
    company.series[prefix] = start + count
    ids = []
    with store.lock:
        for n in range(start, start + count):
            number = f"{prefix}{n:06d}"
            item = store.insert(
                company,
                "items",
                item_blank | {"id": str(uuid.uuid4()), "number": number, "displayName": f"Bulk item {n}"},
                at=at,
            )
            ids.append(item.id)
            for v in range(variants_per_item):
                store.insert(
                    company,
                    "itemVariants",
                    variant_blank
                    | {
                        "id": str(uuid.uuid4()),
                        "itemId": item.id,
                        "itemNumber": number,
                        "code": f"V{v + 1}",
                        "description": f"Variant {v + 1}",
                    },
                    at=at,
                )
    return ids
