"""Harbor's list conventions: the `q` language (lib/q/builder.go), `sort`, `page` /
`page_size` (default 10, maximum 100), `X-Total-Count` and the `Link` header
(server/v2.0/handler/base.go `Links`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus, urlencode

from .errors import bad_request, unprocessable

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 10


@dataclass(frozen=True)
class Exact:
    value: Any


@dataclass(frozen=True)
class Fuzzy:
    value: str


@dataclass(frozen=True)
class Range:
    low: Any = None
    high: Any = None


@dataclass(frozen=True)
class AnyOf:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class AllOf:
    values: tuple[Any, ...]


Matcher = Exact | Fuzzy | Range | AnyOf | AllOf


def _parse_value(text: str) -> Any:
    """Time first, then integer, then string (quotes trimmed), like q.parseValue."""
    text = text.strip()
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        pass
    try:
        return int(text)
    except ValueError:
        return text.strip("\"'")


def _parse_list(text: str, close: str, kind: str) -> tuple[Any, ...]:
    if not text.endswith(close):
        raise ValueError(f"{kind} list must end with {close!r}")
    values = [_parse_value(part) for part in text[1:-1].split(" ")]
    return tuple(v for v in values if not (isinstance(v, str) and v == ""))


def _parse_pattern(text: str) -> Matcher:
    if text[0] == "~":
        if len(text) < 2:
            raise ValueError('fuzzy match value must start with "~" and contain at least '
                             '1 other characters')
        return Fuzzy(text[1:])
    if text[0] == "[":
        if not text.endswith("]") or text.count("~") != 1:
            raise ValueError('range must start with "[", end with "]" and contains only one "~"')
        low, _, high = text[1:-1].partition("~")
        if not low.strip() and not high.strip():
            raise ValueError("min and max at least one should be set in range")
        return Range(_parse_value(low) if low.strip() else None,
                     _parse_value(high) if high.strip() else None)
    if text[0] == "{":
        return AnyOf(_parse_list(text, "}", "or"))
    if text[0] == "(":
        return AllOf(_parse_list(text, ")", "and"))
    return Exact(text[1:] if text.startswith("\\") else text)


def parse_q(q: str | None) -> dict[str, Matcher]:
    """`k=v,k=~v,k=[min~max],k={v1 v2},k=(v1 v2)`; a malformed term is 400 BAD_REQUEST.

    Harbor unescapes `q` a second time after the HTTP layer did (lib/q/builder.go calls
    url.QueryUnescape): a `+` sent as `%2B` becomes a space (send `%252B`)."""
    keywords: dict[str, Matcher] = {}
    if not q:
        return keywords
    try:
        q = unquote_plus(q, errors="strict")
    except UnicodeDecodeError as exc:
        raise bad_request(f"invalid query string: {exc}") from exc
    for term in q.split(","):
        key, sep, value = term.partition("=")
        if not sep or not key or not value:
            raise bad_request('the query string must contain "=" and the key/value cannot '
                              'be empty')
        try:
            keywords[key] = _parse_pattern(value)
        except ValueError as exc:
            raise bad_request(f"invalid query string value: {value}") from exc
    return keywords


def normalise_key(key: str) -> str:
    """Harbor's ORM maps `PolicyID`, `policy_id` and `policyid` to the same column."""
    return key.replace("_", "").lower()


def _comparable(item: Any, wanted: Any) -> tuple[Any, Any]:
    if isinstance(item, bool):
        return str(item).lower(), str(wanted).lower()
    if isinstance(item, int) and not isinstance(wanted, int):
        try:
            return item, int(str(wanted))
        except ValueError:
            return str(item), str(wanted)
    if isinstance(item, str) and not isinstance(wanted, str):
        return item, str(wanted)
    return item, wanted


def _matches(value: Any, matcher: Matcher) -> bool:
    if isinstance(matcher, Exact):
        left, right = _comparable(value, matcher.value)
        return bool(left == right)
    if isinstance(matcher, Fuzzy):
        return matcher.value in str(value)
    if isinstance(matcher, Range):
        try:
            if matcher.low is not None:
                left, right = _comparable(value, matcher.low)
                if left < right:
                    return False
            if matcher.high is not None:
                left, right = _comparable(value, matcher.high)
                if left > right:
                    return False
        except TypeError:
            return False
        return True
    if isinstance(matcher, AnyOf):
        return any(_matches(value, Exact(v)) for v in matcher.values)
    values = value if isinstance(value, list | tuple | set) else [value]
    return all(any(_matches(v, Exact(w)) for v in values) for w in matcher.values)


def filter_items(items: Sequence[Mapping[str, Any]], keywords: Mapping[str, Matcher]
                 ) -> list[Mapping[str, Any]]:
    """Keep the items matching every keyword whose key names one of their fields (keys
    naming no field are ignored, as Harbor's ORM ignores non-filterable keys)."""
    result = []
    for item in items:
        fields = {normalise_key(k): v for k, v in item.items()}
        ok = True
        for key, matcher in keywords.items():
            name = normalise_key(key)
            if name in fields and not _matches(fields[name], matcher):
                ok = False
                break
        if ok:
            result.append(item)
    return result


def parse_sort(sort: str | None) -> list[tuple[str, bool]]:
    """`sort=k1,-k2` → [(k1, ascending), (k2, descending)]."""
    if not sort:
        return []
    result = []
    for part in sort.split(","):
        part = part.strip()
        if not part:
            continue
        result.append((part[1:], True) if part.startswith("-") else (part, False))
    return result


def sort_items(items: list[Mapping[str, Any]], sorts: list[tuple[str, bool]],
               default: list[tuple[str, bool]]) -> list[Mapping[str, Any]]:
    """Stable multi-key sort; keys naming no field are ignored; `default` applies when no
    usable key was given."""
    if not items:
        return items
    fields = {normalise_key(k): k for k in items[0]}
    usable = [(fields[normalise_key(k)], desc) for k, desc in sorts
              if normalise_key(k) in fields]
    if not usable:
        usable = [(fields[normalise_key(k)], desc) for k, desc in default
                  if normalise_key(k) in fields]
    ordered = list(items)
    for key, desc in reversed(usable):
        ordered.sort(key=_sort_key(key), reverse=desc)
    return ordered


def _sort_key(key: str) -> Callable[[Mapping[str, Any]], tuple[bool, Any]]:
    def get(item: Mapping[str, Any]) -> tuple[bool, Any]:
        return item[key] is None, item[key]
    return get


@dataclass
class Page:
    number: int = 1
    size: int = DEFAULT_PAGE_SIZE


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise unprocessable(f"{name} in query must be of type int64: \"{raw}\"") from exc


def parse_page(params: Mapping[str, str]) -> Page:
    size = _int_param(params, "page_size", DEFAULT_PAGE_SIZE)
    if size > MAX_PAGE_SIZE:
        raise unprocessable(f"page_size in query should be less than or equal to "
                            f"{MAX_PAGE_SIZE}")
    number = _int_param(params, "page", 1)
    return Page(number=max(number, 1), size=size)


def paginate(items: Sequence[Any], page: Page) -> list[Any]:
    if page.size <= 0:
        return list(items)
    start = (page.number - 1) * page.size
    return list(items[start:start + page.size])


def links(path: str, query: Sequence[tuple[str, str]], total: int, page: Page) -> str:
    """The `Link` header as Harbor writes it: `<path?...>; rel="prev" , <...>; rel="next"`;
    query keys sorted (Go's url.Values.Encode) and then unescaped."""
    if page.size <= 0:
        return ""

    def url(number: int) -> str:
        values: dict[str, list[str]] = {}
        for key, value in query:
            values.setdefault(key, []).append(value)
        values["page"] = [str(number)]
        values["page_size"] = [str(page.size)]
        pairs = [(key, value) for key in sorted(values) for value in values[key]]
        return f"{path}?{unquote_plus(urlencode(pairs))}"

    result = []
    if page.number > 1 and (page.number - 1) * page.size < total:
        result.append(f'<{url(page.number - 1)}>; rel="prev"')
    if page.size * page.number < total:
        result.append(f'<{url(page.number + 1)}>; rel="next"')
    return " , ".join(result)

