"""Safe XML parsing, and rebuilding XML elements from XML-to-JSON dicts.

BOAMP stores legacy (``Boamp_v230``) and eForms notices inside its JSON records as
XML converted to JSON (xmltodict conventions: ``@attr``, ``#text``, repeated
children as arrays, empty elements as ``""`` or ``null``). Rebuilding an lxml
element from such a dict lets the XML parsers of :mod:`scrapers.boamp_xml` and
:mod:`scrapers.eforms` read it too, instead of maintaining a second parser per
format. The order of *different* sibling elements is lost by the conversion
(e.g. interleaved ``TITULAIRE``/``RENSEIGNEMENT``): parsers pair such siblings
by position, which works for both forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

from lxml import etree

from .base import ParseError

# lxml ships no type information: elements are typed loosely.
Element: TypeAlias = Any


def safe_parser() -> etree.XMLParser:
    """A parser that resolves no entities, never touches the network and refuses huge trees."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_pis=True,
    )


def parse_xml(data: bytes) -> Element:
    """Parse XML bytes with :func:`safe_parser`; :class:`ParseError` if malformed."""
    if not data or not data.strip():
        raise ParseError("empty XML document")
    try:
        root: Element = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"malformed XML: {exc}") from exc
    if root is None:  # pragma: no cover - lxml raises instead
        raise ParseError("empty XML document")
    return root


def local_name(element: Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return str(etree.QName(tag).localname)


def element_from_json(
    tag: str,
    value: Any,
    namespaces: Mapping[str, str] | None = None,
    default_namespace: str | None = None,
) -> Element:
    """Build an element named ``tag`` from an XML-to-JSON value.

    ``namespaces`` maps prefixes (``"cbc"``) to URIs; unprefixed names take
    ``default_namespace``; unknown prefixes get a private ``urn:x-unknown:<prefix>``
    namespace, so they never match a real one. Keys that are not valid XML
    names are skipped.
    """
    nsmap = dict(namespaces or {})
    if isinstance(value, Mapping):
        for key, item in value.items():
            key = str(key)
            if key.startswith("@xmlns:") and isinstance(item, str):
                nsmap.setdefault(key[7:], item)
            elif key == "@xmlns" and isinstance(item, str) and default_namespace is None:
                default_namespace = item
    element: Element = etree.Element(_qualify(tag, nsmap, default_namespace))
    _fill(element, value, nsmap, default_namespace)
    return element


def _qualify(name: str, nsmap: Mapping[str, str], default_namespace: str | None) -> str:
    if ":" in name:
        prefix, local = name.split(":", 1)
        uri = nsmap.get(prefix, f"urn:x-unknown:{prefix}")
        return f"{{{uri}}}{local}"
    if default_namespace:
        return f"{{{default_namespace}}}{name}"
    return name


def _fill(element: Element, value: Any, nsmap: Mapping[str, str], default_namespace: str | None) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        element.text = "true" if value else "false"
        return
    if isinstance(value, (str, int, float)):
        element.text = str(value)
        return
    if isinstance(value, list):  # a list where an element was expected: use its first item
        if value:
            _fill(element, value[0], nsmap, default_namespace)
        return
    if not isinstance(value, Mapping):
        return
    for key, item in value.items():
        key = str(key)
        if key == "#text":
            if item is not None:
                element.text = str(item)
        elif key.startswith("@"):
            name = key[1:]
            if ":" in name or (not item and item != 0):
                continue  # xmlns / xsi:type leftovers
            try:
                element.set(name, str(item))
            except ValueError:
                continue
        else:
            for child_value in item if isinstance(item, list) else [item]:
                try:
                    child = etree.SubElement(element, _qualify(key, nsmap, default_namespace))
                except ValueError:
                    break  # not a valid XML name
                _fill(child, child_value, nsmap, default_namespace)
