"""Write rules of the BC API emulator (dev tooling, never deployed): body checks shared by every entity
set, and the master data rules (customers, items, item variants, currencies, payment terms) per
bc-api.md §3. Sales documents are in `bc_documents`."""

from __future__ import annotations

from typing import Any

from devtools.emulator.bc_schema import COMPANY_SETS, EntityType, names
from devtools.emulator.odata import EMPTY_GUID, BCError, bad_request, is_date, is_guid, parse_datetime
from devtools.emulator.store import Company, Row, Store

MAX_LENGTH = {
    "number": 20,
    "code": 10,
    "displayName": 100,
    "displayName2": 50,
    "description": 100,
    "description2": 50,
    "externalDocumentNumber": 35,
    "email": 80,
    "phoneNumber": 30,
    "customerNumber": 20,
    "itemNumber": 20,
    "lineObjectNumber": 20,
    "addressLine1": 100,
    "addressLine2": 50,
    "city": 30,
    "postalCode": 20,
    "shipToName": 100,
    "shipToContact": 100,
    "clientState": 2048,
}

CODE_FIELDS = names(
    "number code itemNumber customerNumber billToCustomerNumber lineObjectNumber currencyCode "
    "itemCategoryCode "
    "baseUnitOfMeasureCode unitOfMeasureCode taxGroupCode taxCode salesperson salespersonCode"
)


def dialog(message: str) -> BCError:
    """An AL `Error()` surfaced as `Application_DialogException`."""
    return bad_request("Application_DialogException", message)


def invalid_body(message: str = "Invalid Request Body") -> BCError:
    """A body that OData cannot deserialize."""
    return bad_request("BadRequest", message)


def record_not_found(label: str, ident: str) -> BCError:
    """`Internal_RecordNotFound` as BC words it."""
    return bad_request(
        "Internal_RecordNotFound", f"The {label} does not exist. Identification fields and values: {ident}"
    )


def already_exists(label: str, ident: str) -> BCError:
    """`Internal_EntityWithSameKeyExists` as BC words it."""
    return bad_request(
        "Internal_EntityWithSameKeyExists",
        f"The {label} already exists. Identification fields and values: {ident}",
    )


def check_body(
    etype: EntityType, body: Any, row: Row | None = None
) -> tuple[dict[str, Any], dict[str, list]]:
    """Validate a POST (`row` None) or PATCH body: property names, JSON types, enums, lengths, read-only
    and create-only fields. Returns (field values, deep-insert parts)."""
    if not isinstance(body, dict):
        raise invalid_body()
    values: dict[str, Any] = {}
    parts: dict[str, list] = {}
    for name, value in body.items():
        if name.startswith("@odata."):
            continue
        if name in etype.parts:
            if row is not None:
                raise invalid_body("Deep update is not supported.")
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise invalid_body()
            parts[name] = value
            continue
        if name not in etype.fields:
            raise invalid_body(
                f"The property '{name}' does not exist on type 'Microsoft.NAV.{etype.type_name}'. "
                "Make sure to only use property names that are defined by the type."
            )
        values[name] = _check_value(etype, name, value)
    _check_read_only(etype, values, row)
    return values, parts


def _check_value(etype: EntityType, name: str, value: Any) -> Any:
    ftype = etype.fields[name]
    ok = {
        "guid": is_guid(value),
        "string": isinstance(value, str),
        "date": is_date(value),
        "decimal": isinstance(value, int | float) and not isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "datetime": isinstance(value, str) and _is_datetime(value),
    }[ftype]
    if not ok:
        raise invalid_body()
    if ftype == "guid":
        return value.lower()
    if name in CODE_FIELDS:
        value = value.upper()  # BC Code fields are upper case
    if name in etype.enums:
        if value == " ":
            value = "_x0020_"
        if value not in etype.enums[name]:
            raise bad_request(
                "BadRequest",
                f"Invalid Request Body. The value '{value}' is not valid for "
                f"'{name}'. Valid values: {', '.join(etype.enums[name])}.",
            )
    limit = MAX_LENGTH.get(name)
    if ftype == "string" and limit and len(value) > limit:
        raise bad_request(
            "Application_StringExceededLength",
            f"The length of the string is {len(value)}, but "
            f"it must be less than or equal to {limit} characters. Value: {value}",
        )
    return value


def _is_datetime(value: str) -> bool:
    try:
        parse_datetime(value)
    except ValueError:
        return False
    return True


def _check_read_only(etype: EntityType, values: dict[str, Any], row: Row | None) -> None:
    if "id" in values and row is not None and values["id"] != row.id:
        raise dialog('The "id" cannot be changed.')
    for name, value in values.items():
        if name == "id" or name not in etype.read_only | etype.create_only:
            continue
        if name == "number" and etype.set_name in ("salesOrders", "salesInvoices"):
            series = "S-ORD" if etype.set_name == "salesOrders" else "S-INV"
            raise dialog(
                "You may not enter numbers manually. If you want to enter numbers manually, please "
                f"activate Manual Nos. in No. Series {series}."
            )
        if name in etype.create_only:
            if row is not None and value != row.data[name]:
                if name == "sequence":
                    raise dialog(
                        "The value for sequence cannot be modified. Delete and insert the line again."
                    )
                raise dialog(f'The value for "{name}" cannot be modified.')
            continue
        raise bad_request("BadRequest_InvalidOperation", f"Control '{name}' is read-only.")


def check_new_id(company: Company, set_name: str, values: dict[str, Any]) -> None:
    """A client-chosen `id` on POST must be unused."""
    new_id = values.get("id")
    if new_id and new_id != EMPTY_GUID and company.sets[set_name].get(new_id):
        label = COMPANY_SETS[set_name].label
        raise already_exists(label, f"SystemId='{new_id}'")


# ---- references ----------------------------------------------------------------------------------


def resolve_currency(company: Company, values: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`currencyId`/`currencyCode` from the body, checked against each other and the currency table.
    The local currency is stored with an empty id and the LCY code."""
    currencies = company.sets["currencies"]
    code = current.get("currencyCode", "")
    if values.get("currencyId", EMPTY_GUID) != EMPTY_GUID:
        found = currencies.get(values["currencyId"])
        if found is None:
            raise dialog('The "currencyId" does not match to a Currency.')
        if "currencyCode" in values and values["currencyCode"].upper() != found.data["code"].upper():
            raise dialog("The currency values do not match to a specific Currency.")
        code = found.data["code"]
    elif "currencyCode" in values:
        code = values["currencyCode"]
        if code and code.upper() != company.lcy_code and currencies.by_number(code) is None:
            raise record_not_found("Currency", f"Code='{code}'")
    code = (code or company.lcy_code).upper()
    if code == company.lcy_code:
        return {"currencyId": EMPTY_GUID, "currencyCode": code}
    currency = currencies.by_number(code)
    if currency is None:  # the current code's currency was deleted since
        raise record_not_found("Currency", f"Code='{code}'")
    return {"currencyId": currency.id, "currencyCode": code}


def resolve_payment_terms(company: Company, values: dict[str, Any]) -> dict[str, Any]:
    """Check `paymentTermsId` (if given) against the payment terms."""
    terms_id = values.get("paymentTermsId", EMPTY_GUID)
    if terms_id != EMPTY_GUID and company.sets["paymentTerms"].get(terms_id) is None:
        raise dialog('The "paymentTermsId" does not match to a Payment Term.')
    return {"paymentTermsId": terms_id} if "paymentTermsId" in values else {}


# ---- master data ---------------------------------------------------------------------------------


class MasterRules:
    """Create/update/delete of customers, vendors, items, item variants, currencies, payment terms and
    the partner page's web orders."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, company: Company, set_name: str, values: dict[str, Any], parent: Row | None) -> Row:
        """Insert a new entity of a master data set."""
        check_new_id(company, set_name, values)
        etype = COMPANY_SETS[set_name]
        data = etype.blank()
        if set_name == "customers":
            data.update(type="Company", blocked="_x0020_", currencyCode=company.lcy_code)
            data.update(values)
            self._customer(company, data, values)
        elif set_name == "items":
            if "inventory" in values:
                raise dialog("Inventory cannot be changed during on insert.")
            data.update(type="Inventory", baseUnitOfMeasureCode="PCS")
            data.update(values)
            data["number"] = data["number"] or self.store.next_number(company, "ITEM", 1, 5)
        elif set_name == "itemVariants":
            data.update(values)
            self._variant(company, data, values, parent)
        elif set_name == "vendors":
            data.update(blocked="_x0020_", currencyCode=company.lcy_code)
            data.update(values)  # unlike customers, page 30010 does not require a name
            data["number"] = data["number"] or self.store.next_number(company, "V", 1, 5)
            data.update(resolve_currency(company, values, data))
        elif set_name == "webOrders":  # the partner page's own number series
            data.update(values, number=self.store.next_number(company, "WEB", 1, 6))
        else:
            data.update(values)
            if not data["code"]:
                raise bad_request(
                    "BadRequest_RequiredParamNotProvided", "Field 'code' must not be blank or empty."
                )
        self._check_unique(company, set_name, data, None)
        return self.store.insert(company, set_name, data)

    def update(
        self, company: Company, set_name: str, row: Row, values: dict[str, Any], parent: Row | None
    ) -> None:
        """Apply a PATCH to a master data entity."""
        data = row.data | values
        if set_name == "customers":
            self._customer(company, data, values)
        elif set_name == "itemVariants":
            self._variant(company, data, values, parent)
        elif set_name == "items" and set(values) == {"inventory"}:
            row.data["inventory"] = values[
                "inventory"
            ]  # an item journal posting; the Item record is untouched
            return
        self._check_unique(company, set_name, data, row)
        changes = {k: v for k, v in data.items() if row.data[k] != v}
        renamed = set_name == "items" and "number" in changes
        self.store.modify(company, set_name, row, changes)
        if renamed:
            for variant in company.sets["itemVariants"].children(row.id):
                self.store.modify(company, "itemVariants", variant, {"itemNumber": row.data["number"]})

    def delete(self, company: Company, set_name: str, row: Row) -> None:
        """Delete an entity with its parts (an item takes its variants, a shipment its lines)."""
        if set_name == "customers":
            for order in company.sets["salesOrders"].order:
                if order.data["customerId"] == row.id:
                    raise dialog(
                        f"You cannot delete Customer {row.data['number']} because there is at least one "
                        "outstanding Sales Order for this customer."
                    )
        for child_set in COMPANY_SETS[set_name].parts.values():
            for child in list(company.sets[child_set].children(row.id)):
                self.store.delete(company, child_set, child)
        self.store.delete(company, set_name, row)

    def _customer(self, company: Company, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not data["displayName"].strip():
            raise dialog('A "displayName" must be provided.')
        data["number"] = data["number"] or self.store.next_number(company, "GL", 1, 8)
        data.update(resolve_currency(company, values, data))
        data.update(resolve_payment_terms(company, values))

    def _variant(
        self, company: Company, data: dict[str, Any], values: dict[str, Any], parent: Row | None
    ) -> None:
        items = company.sets["items"]
        item = parent
        if values.get("itemId"):
            found = items.get(values["itemId"])
            if parent is not None and (found is None or found is not parent):
                raise dialog("The item values do not match to a specific Item.")
            if found is None:
                raise dialog('The "itemId" does not match to an Item.')
            item = found
        if values.get("itemNumber"):
            found = items.by_number(values["itemNumber"])
            if found is None:
                raise dialog('The "itemNumber" does not match to an Item.')
            if item is not None and found is not item and "itemId" in values:
                raise dialog("The item values do not match to a specific Item.")
            item = found
        if item is None and data["itemId"] == EMPTY_GUID:
            raise dialog('The "itemId" does not match to an Item.')
        if item is not None:
            data.update(itemId=item.id, itemNumber=item.data["number"])
        if not data["code"]:
            raise bad_request(
                "Application_FieldValidationException",
                f"Code must have a value in Item Variant: Item No.={data['itemNumber']}, Code=. "
                "It cannot be zero or empty.",
            )

    def _check_unique(self, company: Company, set_name: str, data: dict[str, Any], row: Row | None) -> None:
        label = COMPANY_SETS[set_name].label
        if set_name == "itemVariants":
            for other in company.sets["itemVariants"].children(data["itemId"]):
                if other is not row and other.data["code"].upper() == data["code"].upper():
                    raise already_exists(label, f"Item No.='{data['itemNumber']}',Code='{data['code']}'")
            return
        entity_set = company.sets[set_name]
        key = entity_set.key_field
        if key and data[key]:
            holder = entity_set.by_number(data[key])
            if holder is not None and holder is not row:
                field = "No." if key == "number" else "Code"
                raise already_exists(label, f"{field}='{data[key]}'")
