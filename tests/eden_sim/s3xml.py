"""S3XML, the exchange format of Eden's peer protocol (`sync/sync.xml`), reduced to
what the simulator exchanges: one `<resource>` per record with its uuid, times and
deleted flag, one `<data field=...>` per field. Real S3XML carries more (references,
components, represent attributes); both simulated peers speak this subset."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime

from .times import iso, parse


@dataclass
class XmlRecord:
    uuid: str
    modified_on: datetime
    created_on: datetime
    deleted: bool = False
    fields: dict[str, str] = field(default_factory=dict)


def encode(table: str, records: list[XmlRecord], domain: str) -> bytes:
    root = ET.Element("s3xml", {"success": "true", "results": str(len(records)),
                                "domain": domain})
    for record in records:
        element = ET.SubElement(root, "resource", {
            "name": table, "uuid": record.uuid, "created_on": iso(record.created_on),
            "modified_on": iso(record.modified_on),
            "deleted": "true" if record.deleted else "false"})
        for name, value in sorted(record.fields.items()):
            data = ET.SubElement(element, "data", {"field": name})
            data.text = value
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def decode(body: bytes, table: str) -> list[XmlRecord]:
    """The records of `table` in an S3XML document; ValueError if it is not one."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"invalid S3XML: {exc}") from None
    if root.tag != "s3xml":
        raise ValueError("invalid S3XML: the root element is not <s3xml>")
    out = []
    for element in root.findall("resource"):
        if element.get("name") != table:
            continue
        modified = parse(element.get("modified_on"))
        created = parse(element.get("created_on")) or modified
        uuid = element.get("uuid") or ""
        if modified is None or created is None or not uuid:
            raise ValueError("invalid S3XML: a resource without uuid or modified_on")
        fields = {str(d.get("field")): d.text or "" for d in element.findall("data")
                  if d.get("field")}
        out.append(XmlRecord(uuid=uuid, modified_on=modified, created_on=created,
                             deleted=element.get("deleted") == "true", fields=fields))
    return out
