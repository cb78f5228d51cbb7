"""Metadata filter language, compiled once per query into a plain predicate.

A filter is a JSON object::

    {"lang": "en"}                                  equality (str, int, float, bool, null)
    {"price": {"$gte": 10, "$lt": 20}}              operators on one field, ANDed
    {"lang": "en", "meta.source": {"$in": ["a", "b"]}}   several fields: AND; dots reach nested objects
    {"$or": [{"lang": "en"}, {"$and": [{...}, {...}]}]}  logical combinators, nestable

Operators: ``$eq $ne $in $nin $gt $gte $lt $lte $exists``. Semantics, chosen so that
filters never surprise:

* Numbers compare as numbers (``1 == 1.0``), but a bool never equals a number
  (``True != 1``), although Python says otherwise.
* A missing field matches ``$ne``/``$nin`` and ``{"$exists": false}`` only; ``null`` is a
  value, so ``{"f": null}`` matches a field present with ``null``, not a missing one.
* Order operators (``$gt`` ...) take a number and match only numeric field values.
* A list or object field value never equals a scalar.

Compiling validates the whole filter first, so a bad filter fails before any search with a
``FilterError`` that names the place (``$or[1] field "price"``) and the fix.

A filter is bounded: at most ``MAX_CONDITIONS`` conditions (field operators and ``$and``/``$or``
branches), ``MAX_DEPTH`` nested ``$and``/``$or`` levels and ``MAX_IN_VALUES`` values in one
``$in``/``$nin``. The predicate runs once per candidate document, so its cost multiplies: an
unbounded ``$or`` of 55,000 branches, under the HTTP body limit, took 20-40 ms per document and
held a worker's event loop past its session timeout (review finding SP-3). Compiling stops at
the first condition over a limit, so even such a filter costs little to refuse.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from index.exceptions import FilterError

__all__ = ["MAX_CONDITIONS", "MAX_DEPTH", "MAX_IN_VALUES", "Predicate", "compile_filter", "match_all"]

MAX_CONDITIONS = 256
"""Field operators plus ``$and``/``$or`` branches in one filter."""
MAX_DEPTH = 8
"""Nested ``$and``/``$or`` levels in one filter."""
MAX_IN_VALUES = 1024
"""Values in one ``$in`` or ``$nin`` list (a set lookup each: they cost one condition together)."""

Predicate = Callable[[Mapping[str, Any]], bool]

_MISSING = object()
_ORDER_OPS: dict[str, Callable[[float, float], bool]] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}
_FIELD_OPS = ("$eq", "$ne", "$in", "$nin", *_ORDER_OPS, "$exists")
_LOGICAL_OPS = ("$and", "$or")
_Key = tuple[str, Any]
_KINDS: dict[type, str] = {str: "s", bool: "b", int: "n", float: "n", type(None): "z"}


def match_all(metadata: Mapping[str, Any]) -> bool:
    """The predicate of the empty filter ``{}``."""
    return True


def compile_filter(spec: Any) -> Predicate:
    """Validate ``spec`` (a decoded JSON object) and compile it into a predicate.

    Raises:
        FilterError: the filter is malformed; the message says where and how to fix it.
    """
    return _compile_object(spec, "filter", _Budget())


class _Budget:
    """The conditions a filter may still have; compiling spends one per condition."""

    def __init__(self) -> None:
        self.left = MAX_CONDITIONS

    def spend(self, where: str) -> None:
        self.left -= 1
        if self.left < 0:
            raise FilterError(f"{where}: the filter has more than {MAX_CONDITIONS} conditions; use \"$in\" for "
                              "many values of one field, or split the query")


def _compile_object(spec: Any, where: str, budget: _Budget, depth: int = 0) -> Predicate:
    """Compile one filter object: each key is a field or a logical operator, all ANDed."""
    if not isinstance(spec, Mapping):
        raise FilterError(f"{where}: expected a JSON object, got {_describe(spec)}")
    parts: list[Predicate] = []
    for key, value in spec.items():
        if not isinstance(key, str):
            raise FilterError(f"{where}: keys must be strings, got {key!r}")
        if key.startswith("$"):
            parts.append(_compile_logical(key, value, where, budget, depth + 1))
        else:
            parts.append(_compile_field(key, value, f"{where} field {_quote(key)}", budget))
    return _all_of(parts)


def _compile_logical(op: str, value: Any, where: str, budget: _Budget, depth: int) -> Predicate:
    """Compile ``$and``/``$or`` over a non-empty list of filter objects."""
    if op not in _LOGICAL_OPS:
        raise FilterError(
            f'{where}: unknown operator "{op}" at the top level; use "$and" or "$or", '
            'or put field operators inside a field: {"field": {"$gt": 1}}'
        )
    if not isinstance(value, list) or not value:
        raise FilterError(f"{where} {op}: expected a non-empty list of filter objects")
    if depth > MAX_DEPTH:
        raise FilterError(f"{where} {op}: more than {MAX_DEPTH} nested $and/$or levels; flatten the filter")
    parts = []
    for i, item in enumerate(value):
        budget.spend(f"{where} {op}[{i}]")
        parts.append(_compile_object(item, f"{where} {op}[{i}]", budget, depth))
    return _all_of(parts) if op == "$and" else _any_of(parts)


def _compile_field(name: str, value: Any, where: str, budget: _Budget) -> Predicate:
    """Compile the condition on one (possibly dotted) field."""
    getter = _field_getter(name, where)
    if not isinstance(value, Mapping):
        budget.spend(where)
        return _compile_op("$eq", value, getter, where)
    if not value:
        raise FilterError(f"{where}: empty operator object; use one of {', '.join(_FIELD_OPS)}")
    if not all(isinstance(op, str) and op.startswith("$") for op in value):
        raise FilterError(
            f"{where}: objects are not comparable values; to reach a nested field use a "
            f'dotted name like "{name}.key", or use operators like {{"$eq": 1}}'
        )
    parts = []
    for op, arg in value.items():
        budget.spend(f"{where} {op}")
        parts.append(_compile_op(op, arg, getter, where))
    return _all_of(parts)


def _compile_op(op: str, arg: Any, getter: Callable[[Mapping[str, Any]], Any], where: str) -> Predicate:
    """Compile one field operator into a predicate over the whole metadata."""
    if op in ("$eq", "$ne"):
        key = _scalar_key(arg, f"{where} {op}")
        if op == "$eq":
            return lambda m: _key_of(getter(m)) == key
        return lambda m: _key_of(getter(m)) != key
    if op in ("$in", "$nin"):
        keys = _scalar_keys(arg, f"{where} {op}")
        if op == "$in":
            return lambda m: _key_of(getter(m)) in keys
        return lambda m: _key_of(getter(m)) not in keys
    if op in _ORDER_OPS:
        return _order_predicate(_ORDER_OPS[op], _number(arg, f"{where} {op}"), getter)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise FilterError(f"{where} $exists: expected true or false, got {_describe(arg)}")
        return lambda m: (getter(m) is not _MISSING) is arg
    raise FilterError(f'{where}: unknown operator "{op}"; use one of {", ".join(_FIELD_OPS)}')


def _order_predicate(
    compare: Callable[[float, float], bool], bound: float, getter: Callable[[Mapping[str, Any]], Any]
) -> Predicate:
    """Match numeric (non-bool) field values for which ``compare(value, bound)`` holds."""

    def predicate(metadata: Mapping[str, Any]) -> bool:
        value = getter(metadata)
        return _is_number(value) and compare(value, bound)

    return predicate


def _field_getter(name: str, where: str) -> Callable[[Mapping[str, Any]], Any]:
    """Return a function reading the field, or ``_MISSING``; dots step into nested objects."""
    path = name.split(".")
    if not all(path):
        raise FilterError(f"{where}: empty segment in field name; write nested fields as \"a.b\"")
    if len(path) == 1:
        return lambda m: m.get(name, _MISSING)

    head, *rest = path

    def get_nested(metadata: Mapping[str, Any]) -> Any:
        value = metadata.get(head, _MISSING)
        for part in rest:
            if not isinstance(value, dict):  # nested objects are JSON-decoded dicts
                return _MISSING
            value = value.get(part, _MISSING)
        return value

    return get_nested


def _key_of(value: Any) -> _Key | None:
    """Comparison key: bools, numbers, strings and null never equal one another.

    ``None`` for values that equal nothing (missing fields, lists, objects). Types are
    matched exactly, as ``json.loads`` produces them, because this runs once per document.
    """
    kind = _KINDS.get(type(value))
    return (kind, value) if kind else None


def _scalar_key(value: Any, where: str) -> _Key:
    """The key of a filter operand, which must be a finite scalar."""
    key = _key_of(value)
    if key is None:
        raise FilterError(f"{where}: expected a string, number, boolean or null, got {_describe(value)}")
    if key[0] == "n" and not math.isfinite(value):
        raise FilterError(f"{where}: numbers must be finite, got {value!r}")
    return key


def _scalar_keys(values: Any, where: str) -> frozenset[_Key]:
    """The keys of a ``$in``/``$nin`` list."""
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise FilterError(f"{where}: expected a list of values, got {_describe(values)}")
    if len(values) > MAX_IN_VALUES:
        raise FilterError(f"{where}: {len(values)} values, more than {MAX_IN_VALUES}; split the query")
    return frozenset(_scalar_key(v, f"{where}[{i}]") for i, v in enumerate(values))


def _number(value: Any, where: str) -> float:
    """A finite int or float operand (bools rejected: they are not numbers here)."""
    if not _is_number(value) or not math.isfinite(value):
        raise FilterError(f"{where}: expected a finite number, got {_describe(value)}")
    return float(value)


def _is_number(value: Any) -> bool:
    """Ints and floats are numbers; bools, although ints in Python, are not."""
    return _KINDS.get(type(value)) == "n"


def _all_of(parts: list[Predicate]) -> Predicate:
    """AND of predicates, without wrapper overhead for the common single-condition case."""
    if not parts:
        return match_all
    if len(parts) == 1:
        return parts[0]

    def conjunction(metadata: Mapping[str, Any]) -> bool:
        for part in parts:  # noqa: SIM110 - half the cost of all(<generator>) per document
            if not part(metadata):
                return False
        return True

    return conjunction


def _any_of(parts: list[Predicate]) -> Predicate:
    """OR of predicates."""
    if len(parts) == 1:
        return parts[0]
    return lambda m: any(p(m) for p in parts)


def _quote(name: str) -> str:
    """Field names in messages are double-quoted, as in the JSON the user wrote."""
    return f'"{name}"'


def _describe(value: Any) -> str:
    """Short description of an offending value for error messages."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
