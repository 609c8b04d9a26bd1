"""`$metadata` of the BC API emulator (dev tooling, never deployed): the CSDL (OData v4 EDMX) of every
entity set an API route serves, generated from the entity types in `bc_schema.py`.

BC describes each API page as an `EntityType` in namespace `Microsoft.NAV` with key `id`, its fields
as properties and its parts as contained navigation properties, and each entity set in the container
`NAV` (docs: `dev-itpro/developer/devenv-api-pages.md`; the emulator's differences: docs/emulator.md).
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from devtools.emulator.bc_schema import COMPANY, COMPANY_SETS, EntityType, route_sets

EDM_TYPES = {
    "guid": "Edm.Guid",
    "string": "Edm.String",
    "date": "Edm.Date",
    "datetime": "Edm.DateTimeOffset",
    "decimal": "Edm.Decimal",
    "int": "Edm.Int32",
    "bool": "Edm.Boolean",
}


def _entity_type(etype: EntityType) -> list[str]:
    lines = [f"<EntityType Name={quoteattr(etype.type_name)}>",
             '<Key><PropertyRef Name="id"/></Key>']
    for name, ftype in etype.fields.items():
        nullable = ' Nullable="false"' if name == "id" else ""
        lines.append(f"<Property Name={quoteattr(name)} Type={quoteattr(EDM_TYPES[ftype])}{nullable}/>")
    for nav, child in etype.parts.items():
        child_type = COMPANY_SETS[child].type_name
        lines.append(f'<NavigationProperty Name={quoteattr(nav)} '
                     f'Type="Collection(Microsoft.NAV.{child_type})" ContainsTarget="true"/>')
    lines.append("</EntityType>")
    return lines


def metadata(route: str) -> str:
    """The EDMX document of `api/{route}/$metadata`."""
    sets = route_sets(route)
    types = [COMPANY, *sets.values()]
    body = [line for etype in types for line in _entity_type(etype)]
    container = [f'<EntitySet Name="companies" EntityType="Microsoft.NAV.{COMPANY.type_name}"/>']
    container += [f"<EntitySet Name={quoteattr(name)} EntityType=\"Microsoft.NAV.{t.type_name}\"/>"
                  for name, t in sets.items()]
    return "\n".join([
        '<?xml version="1.0" encoding="utf-8"?>',
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
        "<edmx:DataServices>",
        '<Schema Namespace="Microsoft.NAV" xmlns="http://docs.oasis-open.org/odata/ns/edm">',
        *body,
        '<EntityContainer Name="NAV">',
        *container,
        "</EntityContainer>",
        "</Schema>",
        "</edmx:DataServices>",
        "</edmx:Edmx>",
    ])
