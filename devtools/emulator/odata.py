"""OData pieces of the BC API emulator (dev tooling, never deployed): errors, literals, `$filter`,
`$select`/`$expand`/`$orderby` parsing and skip tokens (bc-api.md §5, §6)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
SYNTAX_ERROR = "Bad Request - Error in query syntax."


class BCError(Exception):
    """An error answered as `{"error": {"code", "message"}}` (bc-api.md §6.1)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        """The BC error envelope; the message ends with a correlation id like BC's."""
        text = self.message if self.message.endswith(".") else self.message + "."
        return {"error": {"code": self.code, "message": f"{text}  CorrelationId:  {uuid.uuid4()}."}}


def bad_request(code: str, message: str) -> BCError:
    """A 400 error with `code`."""
    return BCError(400, code, message)


def no_property(name: str, type_name: str) -> BCError:
    """The error for an unknown property in a query option."""
    return bad_request(
        "BadRequest_NotFound",
        f"Could not find a property named '{name}' on type 'Microsoft.NAV.{type_name}'.",
    )


# ---- values --------------------------------------------------------------------------------------


def format_datetime(value: datetime) -> str:
    """BC's datetime format: UTC with milliseconds, e.g. `2023-09-02T17:38:08.537Z`."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_datetime(text: str) -> datetime:
    """Parse an ISO datetime (`Z` or offset; naive = UTC); raises ValueError."""
    value = datetime.fromisoformat(text.replace("z", "Z"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def is_guid(text: Any) -> bool:
    """True if `text` is a GUID string in 8-4-4-4-12 form."""
    return isinstance(text, str) and _GUID.fullmatch(text) is not None


def is_date(text: Any) -> bool:
    """True if `text` is a `YYYY-MM-DD` date."""
    if not isinstance(text, str) or not _DATE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


# ---- $filter -------------------------------------------------------------------------------------

FieldTypes = dict[str, str]  # field -> "guid" | "string" | "date" | "datetime" | "decimal" | "int" | "bool"
Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<paren>[(),])"
    r"|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?![\w-])"
    r"|(?P<dt>\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)"
    r"|(?P<date>\d{4}-\d{2}-\d{2})(?![\w-])"
    r"|(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?)(?![\w])"
    r"|(?P<word>[A-Za-z_][\w]*))"
)
_OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "ge": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "le": lambda a, b: a is not None and a <= b,
}
_FUNCS = {
    "contains": lambda a, b: b in a,
    "startswith": lambda a, b: a.startswith(b),
    "endswith": lambda a, b: a.endswith(b),
}


@dataclass
class Filter:
    """A parsed `$filter`: the predicate on raw entity dicts and the top-level `eq` conditions."""

    predicate: Predicate
    equals: dict[str, Any] = field(default_factory=dict)  # field -> value of top-level `and`-ed `eq`s


def _one_of(prop: str, values: frozenset[Any]) -> Predicate:
    return lambda e: _normal(e.get(prop)) in values


def _either(a: Predicate, b: Predicate) -> Predicate:
    return lambda e: a(e) or b(e)


def _both(a: Predicate, b: Predicate) -> Predicate:
    return lambda e: a(e) and b(e)


def _negation(f: Predicate) -> Predicate:
    return lambda e: not f(e)


class _Node:
    def __init__(self, fn: Predicate, fields: set[str], equals: dict[str, Any],
                 any_of: frozenset[Any] | None = None) -> None:
        self.fn, self.fields, self.equals = fn, fields, equals
        self.any_of = any_of  # `f eq a or f eq b …` on one non-datetime field: the values


def parse_filter(text: str, types: FieldTypes, type_name: str) -> Filter:
    """Parse a BC `$filter` (eq/ne/gt/ge/lt/le, and, or on one field, not, parentheses, contains/
    startswith/endswith) into a predicate; raises BCError like BC does."""
    tokens = _tokenize(text)
    parser = _FilterParser(tokens, types, type_name)
    node = parser.expression()
    if parser.pos != len(tokens):
        raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
    return Filter(node.fn, node.equals)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match:
            raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _FilterParser:
    def __init__(self, tokens: list[tuple[str, str]], types: FieldTypes, type_name: str) -> None:
        self.tokens, self.types, self.type_name, self.pos = tokens, types, type_name, 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("", "")

    def take(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
        self.pos += 1
        return self.tokens[self.pos - 1]

    def expect(self, value: str) -> None:
        if self.take()[1] != value:
            raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)

    def expression(self) -> _Node:
        node = self.conjunction()
        while self.peek() == ("word", "or"):
            self.take()
            right = self.conjunction()
            fields = node.fields | right.fields
            if len(fields) > 1:
                raise bad_request(
                    "BadRequest_NotSupported",
                    "The 'OR' operator is not supported on distinct fields on an OData filter.",
                )
            if node.any_of is not None and right.any_of is not None:
                # a chain of `eq`s (a batched key check): one set look-up instead of n comparisons
                values = node.any_of | right.any_of
                (prop,) = fields
                node = _Node(_one_of(prop, values), fields, {}, values)
                continue
            node = _Node(_either(node.fn, right.fn), fields, {})
        return node

    def conjunction(self) -> _Node:
        node = self.unary()
        while self.peek() == ("word", "and"):
            self.take()
            right = self.unary()
            node = _Node(_both(node.fn, right.fn), node.fields | right.fields,
                         {**node.equals, **right.equals})
        return node

    def unary(self) -> _Node:
        kind, value = self.peek()
        if (kind, value) == ("word", "not"):
            self.take()
            inner = self.unary()
            return _Node(_negation(inner.fn), inner.fields, {})
        if value == "(":
            self.take()
            node = self.expression()
            self.expect(")")
            return node
        if kind == "word" and value in _FUNCS:
            return self.function()
        return self.comparison()

    def function(self) -> _Node:
        name = self.take()[1]
        self.expect("(")
        prop = self.field()
        self.expect(",")
        literal = self.literal(prop)
        self.expect(")")
        if self.types[prop] != "string":
            raise bad_request("BadRequest", f"The function '{name}' is not supported for '{prop}'.")
        fn = _FUNCS[name]
        return _Node(lambda e: fn(e.get(prop) or "", literal), {prop}, {})

    def comparison(self) -> _Node:
        prop = self.field()
        kind, op = self.take()
        if kind != "word" or op not in _OPS:
            raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
        literal = self.literal(prop)
        compare = _OPS[op]
        if self.types[prop] == "datetime" and literal is not None:

            def fn(e: dict[str, Any]) -> bool:
                raw = e.get(prop)
                return compare(parse_datetime(raw) if raw else None, literal)
        else:

            def fn(e: dict[str, Any]) -> bool:
                return compare(_normal(e.get(prop)), literal)

        simple = op == "eq" and self.types[prop] != "datetime" and literal is not None
        return _Node(fn, {prop}, {prop: literal} if op == "eq" else {},
                     frozenset([literal]) if simple else None)

    def field(self) -> str:
        kind, name = self.take()
        if kind != "word":
            raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
        if name not in self.types:
            raise no_property(name, self.type_name)
        return name

    def literal(self, prop: str) -> Any:
        kind, raw = self.take()
        ftype = self.types[prop]
        if kind == "word" and raw == "null":
            return None
        expected = {
            "string": ("str",),
            "guid": ("guid",),
            "date": ("date",),
            "datetime": ("dt", "date"),
            "decimal": ("num",),
            "int": ("num",),
            "bool": ("word",),
        }[ftype]
        if kind not in expected or (ftype == "bool" and raw not in ("true", "false")):
            raise bad_request(
                "BadRequest",
                f"A binary operator with incompatible types was detected. Found operand types "
                f"'{_EDM[ftype]}' and '{_edm_of(kind)}' for the property '{prop}'.",
            )
        if ftype == "string":
            return raw[1:-1].replace("''", "'")
        if ftype == "guid":
            return raw.lower()
        if ftype == "datetime":
            try:
                return parse_datetime(raw)
            except ValueError:
                raise bad_request("BadRequest_NotFound", SYNTAX_ERROR) from None
        if ftype == "date":
            if not is_date(raw):
                raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
            return raw
        if ftype == "bool":
            return raw == "true"
        return float(raw.rstrip("mMdDfFlL"))


_EDM = {
    "string": "Edm.String",
    "guid": "Edm.Guid",
    "date": "Edm.Date",
    "datetime": "Edm.DateTimeOffset",
    "decimal": "Edm.Decimal",
    "int": "Edm.Int32",
    "bool": "Edm.Boolean",
}


def _edm_of(kind: str) -> str:
    return {
        "str": "Edm.String",
        "guid": "Edm.Guid",
        "date": "Edm.Date",
        "dt": "Edm.DateTimeOffset",
        "num": "Edm.Decimal",
        "word": "Edm.Untyped",
    }.get(kind, "Edm.Untyped")


def _normal(value: Any) -> Any:
    """Lower-case GUID strings so GUID comparisons ignore case."""
    return value.lower() if isinstance(value, str) and len(value) == 36 and is_guid(value) else value


# ---- $select, $expand, $orderby ------------------------------------------------------------------


def parse_select(text: str, types: FieldTypes, type_name: str) -> list[str]:
    """Parse `$select` into a list of fields (unknown field → BC error)."""
    fields = [part.strip() for part in text.split(",") if part.strip()]
    for name in fields:
        if name not in types:
            raise no_property(name, type_name)
    return fields


@dataclass
class Expand:
    """One `$expand` item: navigation name plus its nested `$select`/`$filter` text."""

    name: str
    select: str | None = None
    filter: str | None = None


def parse_expand(text: str) -> list[Expand]:
    """Parse `$expand=a,b($select=x,y;$filter=...)`."""
    items: list[Expand] = []
    for part in _split_top(text, ","):
        match = re.fullmatch(r"\s*(\w+)\s*(?:\((.*)\))?\s*", part, re.S)
        if not match:
            raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
        item = Expand(match.group(1))
        for option in _split_top(match.group(2) or "", ";"):
            key, sep, value = option.partition("=")
            key = key.strip()
            if not sep or key not in ("$select", "$filter"):
                raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
            setattr(item, key[1:], value)
        items.append(item)
    return items


def _split_top(text: str, sep: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
        elif char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def parse_orderby(text: str, types: FieldTypes, type_name: str) -> list[tuple[str, bool]]:
    """Parse `$orderby=a desc,b` into (field, descending) pairs."""
    keys = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
        if words[0] not in types:
            raise no_property(words[0], type_name)
        keys.append((words[0], len(words) == 2 and words[1] == "desc"))
    return keys


def sort_rows(rows: list[Any], keys: list[tuple[str, bool]]) -> list[Any]:
    """Stable multi-key sort of rows (objects with `.data`) by `keys`; strings case-insensitively."""
    for name, desc in reversed(keys):
        rows = sorted(rows, key=_by_field(name), reverse=desc)
    return rows


def _sort_key(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _by_field(name: str) -> Callable[[Any], Any]:
    """The sort key of a row (an object with `.data`) by field `name`."""
    return lambda row: _sort_key(row.data.get(name))


def parse_max_page_size(prefer: str | None) -> int | None:
    """The `odata.maxpagesize` value of a `Prefer` header, if any."""
    match = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", prefer or "")
    return int(match.group(1)) if match else None


def parse_top(text: str | None) -> int | None:
    """`$top` as an int (negative or non-numeric → BC error)."""
    if text is None:
        return None
    if not text.strip().isdigit():
        raise bad_request("BadRequest_NotFound", SYNTAX_ERROR)
    return int(text)
