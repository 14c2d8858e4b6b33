"""A chapter's parameters: each one's type, range and value by profile, declared once, checked before any cell computes.

A chapter's parameters cell gives every parameter a default (``None``: "by profile"); the cell right
after it declares the schema and resolves the values::

    # %% tags=["parameters"]
    profile = "quick"
    device = "auto"
    seed = 0
    side = None            # image side in pixels (None: by profile)
    epochs = None

    # %% tags=["hide-input"]
    from inrlib.book.params import COMMON, Param, resolve

    schema = {**COMMON,
              "side": Param(int, min=3, smoke=12, quick=48, paper=128),
              "epochs": Param(int, min=1, smoke=4, quick=60, paper=300)}
    globals().update(resolve(schema, profile, globals()))   # checked; None -> the profile's value

:func:`resolve` returns every schema parameter's value: ``None`` replaced by the profile's value
(:class:`Param`'s ``smoke``/``quick``/``paper``, or ``default``), anything else used as given when it
fits, else refused with a :class:`ParameterError` such as ``epochs must be an int >= 1, or None (the
profile's value), got 0``. Strings (``-r NAME VALUE`` passes them raw) are converted where the type
says so (``"16"`` -> ``16`` for an int; ``"abc"`` refused); a bool is never taken for a number.

The book pipeline (``scripts/bookpipe.py execute``) runs that cell on the ``-p``/``-r`` values before
papermill starts, so a refused value is reported in the terminal at once and no notebook is replaced;
the cell must therefore only import from :mod:`inrlib` and compute nothing.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .runtime import PROFILES

__all__ = ["Param", "ListOf", "name_list", "epoch_list", "ParameterError", "resolve", "COMMON"]

_UNSET = object()
_EPOCH_WORDS = ("start", "middle", "end", "all")


class ParameterError(ValueError):
    """A chapter parameter has a value its schema refuses (the message names it, the value and what fits)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _items(text: str) -> list[str]:
    """``"16,64"`` or ``"[16, 64]"`` -> ``["16", "64"]`` (blank items dropped)."""
    text = text.strip()
    if text[:1] in "[(" and text[-1:] in "])":
        text = text[1:-1]
    return [s.strip().strip("'\"") for s in text.split(",") if s.strip().strip("'\"")]


class ListOf:
    """A non-empty list of ``item`` (``int``, ``float`` or ``str``) values: a list or tuple, or a string
    ``"16,64"`` / ``"[16, 64]"`` (what ``-p`` and ``-r`` pass), converted to a list. A :class:`Param`'s
    ``min``/``max``/``choices`` apply to each item."""

    def __init__(self, item: type) -> None:
        if item not in (int, float, str):
            raise TypeError(f"ListOf(item) takes int, float or str, got {item!r}")
        self.item = item

    def __repr__(self) -> str:
        return f"ListOf({self.item.__name__})"


class _Spec:
    """A value kept as given once its form is checked (``check`` returns whether it fits)."""

    def __init__(self, name: str, what: str, check: Callable[[Any], bool]) -> None:
        self.name, self.what, self.check = name, what, check

    def __repr__(self) -> str:
        return self.name


def _names_ok(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_items(value))
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)


def _epochs_ok(value: Any) -> bool:
    items = _items(value) if isinstance(value, str) else [value] if _is_int(value) else value
    if not isinstance(items, (list, tuple)) or not items:
        return False
    for item in items:
        if isinstance(item, str):
            item = item.strip().lower()
            if item in _EPOCH_WORDS:
                continue
            if not item.lstrip("+").isdigit():
                return False
        elif not _is_int(item) or item < 0:
            return False
    return True


#: names or paths: a non-empty string (comma-separated for several) or a list of strings; kept as given.
name_list = _Spec("name_list", "a name or path, or a comma-separated list of them", _names_ok)
#: snapshot epochs as :func:`inrlib.train.resolve_epochs` reads them (``"0,30,60"``, ``"start,end"``, ``30``,
#: ``[0, 30]``); kept as given (the range is checked against ``epochs`` there).
epoch_list = _Spec("epoch_list", "epochs such as '0,30,60' or 'start,middle,end' (ints >= 0 or start, middle, "
                   "end, all)", _epochs_ok)


class Param:
    """One parameter's type, range and value by profile.

    Args:
        kind: ``int``, ``float`` (an int fits too, kept as given), ``bool``, ``str`` (non-empty),
            ``ListOf(int | float | str)``, :data:`name_list` or :data:`epoch_list`.
        min, max: bounds (inclusive; ``exclusive=True`` excludes ``min``), for numbers and each
            item of a ``ListOf`` of numbers. Floats must be finite.
        choices: the values allowed (a ``str`` or ``int`` kind, or each item of a ``ListOf``).
        smoke, quick, paper: what ``None`` means in each profile (all three, or none of them);
            ``default``: what it means in every profile. A value may be a function of the values
            resolved so far (earlier entries of the schema), e.g. ``paper=lambda v: v["side"]``;
            ``None`` there keeps ``None`` (the chapter's own meaning).
        none: ``None`` is allowed and kept (the chapter gives it a meaning) when no profile value is given.
    """

    def __init__(self, kind: Any, *, min: float | None = None, max: float | None = None, exclusive: bool = False,
                 choices: Iterable[Any] | None = None, none: bool = False, default: Any = _UNSET,
                 smoke: Any = _UNSET, quick: Any = _UNSET, paper: Any = _UNSET) -> None:
        item = kind.item if isinstance(kind, ListOf) else kind
        if not (kind in (int, float, bool, str) or isinstance(kind, (ListOf, _Spec))):
            raise TypeError(f"Param kind must be int, float, bool, str, ListOf(...), name_list or epoch_list, "
                            f"got {kind!r}")
        if (min is not None or max is not None) and item not in (int, float):
            raise TypeError(f"Param({kind!r}) takes no min/max: only numbers have a range")
        if exclusive and min is None:
            raise TypeError("Param(exclusive=True) needs a min (exclusive excludes the min)")
        if choices is not None and item not in (int, str):
            raise TypeError(f"Param({kind!r}) takes no choices: only str and int values have them")
        by_profile = {p: v for p, v in zip(PROFILES, (smoke, quick, paper)) if v is not _UNSET}
        if by_profile and len(by_profile) != len(PROFILES):
            raise TypeError(f"Param needs a value for every profile ({', '.join(PROFILES)}) or none; "
                            f"got {', '.join(by_profile)}")
        if by_profile and default is not _UNSET:
            raise TypeError("Param takes default= (every profile) or smoke=, quick=, paper=, not both")
        self.kind, self.min, self.max, self.exclusive = kind, min, max, exclusive
        self.choices = tuple(choices) if choices is not None else None
        self.none = none
        self.by_profile = by_profile or ({p: default for p in PROFILES} if default is not _UNSET else None)

    def __repr__(self) -> str:
        parts = [getattr(self.kind, "__name__", repr(self.kind))]
        parts += [f"{k}={getattr(self, k)!r}" for k in ("min", "max", "exclusive", "choices", "none")
                  if getattr(self, k)]
        if self.by_profile:
            parts += [f"{p}={v!r}" for p, v in self.by_profile.items()]
        return f"Param({', '.join(parts)})"

    # ------------------------------------------------------------------ what fits

    def _range(self) -> str:
        low = None if self.min is None else f"{'>' if self.exclusive else '>='} {self.min:g}"
        if self.max is None:
            return f" {low}" if low else ""
        if low is None:
            return f" <= {self.max:g}"
        if self.exclusive:
            return f" {low} and <= {self.max:g}"
        return f" from {self.min:g} to {self.max:g}"

    def what(self) -> str:
        """What fits, for messages: ``"an int >= 1, or None (the profile's value)"``."""
        item = self.kind.item if isinstance(self.kind, ListOf) else self.kind
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
            if isinstance(self.kind, ListOf):
                text = f"a list of values, each {text}"
        elif isinstance(self.kind, _Spec):
            text = self.kind.what
        elif self.kind is bool:
            text = "True or False"
        elif self.kind is str:
            text = "a non-empty string"
        elif isinstance(self.kind, ListOf):
            noun = {int: "ints", float: "numbers", str: "names"}[item]
            example = {int: "'16,64'", float: "'2,8.5'", str: "'a,b'"}[item]
            text = f"a list of {noun}{self._range()} (e.g. {example})"
        else:
            text = ("an int" if self.kind is int else "a number") + self._range()
        if self.by_profile is not None:
            text += ", or None (the profile's value)"
        elif self.none:
            text += ", or None"
        return text

    def _scalar(self, value: Any, kind: type) -> tuple[bool, Any]:
        """``(fits, converted)`` for one scalar of ``kind`` (strings parsed for numbers and bools)."""
        if isinstance(value, str) and kind is not str:
            text = value.strip()
            if kind is bool:
                return (True, text.lower() == "true") if text.lower() in ("true", "false") else (False, value)
            try:
                value = int(text) if kind is int else float(text)
            except ValueError:
                return False, value
        if kind is bool:
            return isinstance(value, bool) or type(value).__name__ == "bool_", value
        if kind is str:
            return isinstance(value, str) and bool(value.strip()), value
        if not (_is_int(value) if kind is int else _is_number(value)):
            return False, value
        if kind is float and not math.isfinite(value):
            return False, value
        if self.min is not None and (value <= self.min if self.exclusive else value < self.min):
            return False, value
        if self.max is not None and value > self.max:
            return False, value
        return True, value

    def check(self, name: str, value: Any) -> Any:
        """``value`` as the chapter uses it (strings converted where the kind says so); a
        :class:`ParameterError` naming ``name``, what fits and ``value`` when it does not fit."""
        if value is None or (isinstance(value, str) and value.strip() in ("None", "none")
                             and self.kind is not str and not isinstance(self.kind, _Spec)):
            if self.none or self.by_profile is not None:
                return None
            raise ParameterError(f"{name} must be {self.what()}, got {value!r}")
        if isinstance(self.kind, _Spec):
            fits, out = self.kind.check(value), value
        elif isinstance(self.kind, ListOf):
            items = _items(value) if isinstance(value, str) else value
            fits = isinstance(items, (list, tuple)) and len(items) > 0
            out = []
            for item in items if fits else []:
                ok, item = self._scalar(item, self.kind.item)
                fits = fits and ok and (self.choices is None or item in self.choices)
                out.append(item)
        else:
            fits, out = self._scalar(value, self.kind)
            fits = fits and (self.choices is None or out in self.choices)
        if not fits:
            hint = ""
            if self.kind is str and _is_number(value):
                hint = " (a number: pass it with -r NAME VALUE to keep it a string)"
            raise ParameterError(f"{name} must be {self.what()}, got {value!r}{hint}")
        return out

    def profile_value(self, name: str, profile: str, values: Mapping[str, Any]) -> Any:
        """What ``None`` means for ``name`` in ``profile`` (a function of ``values`` when declared so)."""
        value = self.by_profile[profile]
        if callable(value):
            value = value(values)
        if value is None:
            return None
        try:
            return self.check(name, value)
        except ParameterError as err:
            raise TypeError(f"the schema's {profile} value of {name} does not fit its own Param: {err}") from None


#: ``profile``, ``device`` and ``seed``, which every chapter has.
COMMON: dict[str, Param] = {
    "profile": Param(str, choices=PROFILES),
    "device": Param(str),
    "seed": Param(int, min=0),
}


def resolve(schema: Mapping[str, Param], profile: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The values a chapter uses: for each ``schema`` entry (in order), ``given[name]`` checked, or
    its ``profile`` value where it is ``None``.

    Args:
        schema: ``{name: Param}``; a :class:`Param`'s profile value may read earlier entries.
        profile: ``"smoke"``, ``"quick"`` or ``"paper"``.
        given: the parameters as set (a notebook passes ``globals()``); only the schema's names are read.

    Returns:
        ``{name: value}`` for every schema entry.

    Raises:
        ParameterError: one line per refused value, ``"<name> must be <what>, got <value!r>"``.
        TypeError: the schema names a parameter ``given`` lacks, or its own profile values do not fit.
    """
    if profile not in PROFILES:
        raise ParameterError(f"profile must be one of {', '.join(repr(p) for p in PROFILES)}, got {profile!r}")
    missing = [name for name in schema if name not in given]
    if missing:
        raise TypeError(f"the schema declares {', '.join(missing)}, which the parameters cell does not define; "
                        "define them there or remove them from the schema")
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, param in schema.items():
        value = given[name]
        try:
            if value is None and param.by_profile is not None:
                values[name] = param.profile_value(name, profile, values)
            else:
                values[name] = param.check(name, value)
        except ParameterError as err:
            problems.append(str(err))
        except KeyError as err:   # a profile value reading an earlier parameter: refused above, or a schema mistake
            read = err.args[0] if err.args else None
            if not (read in schema and read not in values and problems):
                raise TypeError(f"the profile value of {name} reads {read!r}, which no earlier schema entry "
                                f"defines; declare it before {name}") from None
    if problems:
        raise ParameterError("\n".join(problems))
    return values
