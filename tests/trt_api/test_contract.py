"""The TensorRT doubles (tests/trt_doubles.py) claim only what the real bindings have.

Checked against API dumps of the real `tensorrt-cu12-bindings` wheels, made by tests/trt_api/make_dumps.py (which
says how to re-make them): every name, enum value, property and method parameter a double has must exist in the
real module of the same version, and a name a double leaves out of one version while another version has it (a
removal or an addition) must be absent from that real version too. No network: the dumps are checked in.
"""

from __future__ import annotations

import enum
import inspect
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import trt_doubles
from trt_doubles import World

NEWEST = "11.4.0.106"  # the newest TensorRT on PyPI when the dumps were made: the doubles must not lag behind it
CHECKED = (*trt_doubles.VERSIONS, NEWEST)
HERE = Path(__file__).resolve().parent


def real(version: str) -> dict[str, Any]:
    path = HERE / f"tensorrt-{version}.json"
    if not path.is_file():
        pytest.fail(f"the doubles claim TensorRT {version}, which has no dump: "
                    f"python {HERE / 'make_dumps.py'} {version}")
    return json.loads(path.read_text())


def parameters(function: Any) -> list[list[str]]:
    params = list(inspect.signature(function).parameters.values())
    return [[p.name + ("=" if p.default is not p.empty else "") for p in params if p.name != "self"]]


def describe_class(cls: type) -> dict[str, dict]:
    """A double class in the dump's form: its public members, plus __init__ where it defines one."""
    members = {}
    for name in dir(cls):
        if name.startswith("_") and name != "__init__":
            continue
        raw = inspect.getattr_static(cls, name)
        if name == "__init__" and raw is object.__init__:
            continue
        if isinstance(raw, property) or inspect.ismemberdescriptor(raw):  # a __slots__ attribute is settable
            members[name] = {"kind": "property", "settable": inspect.ismemberdescriptor(raw) or raw.fset is not None}
        elif isinstance(raw, type) and issubclass(raw, enum.Enum):
            members[name] = {"kind": "enum", "members": {m.name: int(m) for m in raw}}
        elif isinstance(raw, enum.Enum):
            members[name] = {"kind": "value", "value": int(raw)}
        elif callable(raw):
            members[name] = {"kind": "method", "signatures": parameters(raw)}
    return members


def describe(trt: ModuleType) -> dict[str, dict]:
    """The double module in the dump's form."""
    api = {}
    for name, value in vars(trt).items():
        if name.startswith("_"):
            continue
        if isinstance(value, type) and issubclass(value, enum.Enum):
            api[name] = {"kind": "enum", "members": {m.name: int(m) for m in value}}
        elif isinstance(value, type):
            api[name] = {"kind": "class", "members": describe_class(value)}
        else:
            api[name] = {"kind": "function", "signatures": parameters(value)}
    return api


def compatible(double: list[str], overloads: list[list[str]]) -> bool:
    """The double's parameters are one real overload's, in order, less only parameters that have defaults."""
    for overload in overloads:
        names = [p.rstrip("=") for p in overload]
        mine = [p.rstrip("=") for p in double]
        if (mine == [n for n in names if n in mine] and all(p in mine for p in overload if not p.endswith("="))
                and all(p in overload for p in double if p.endswith("="))):
            return True
    return False


def mismatches(path: str, double: dict, actual: dict | None) -> list[str]:
    """What the double claims about `path` that the real entry does not have."""
    if actual is None:
        return [f"{path}: not in the real module"]
    if double["kind"] != actual["kind"]:
        return [f"{path}: a {double['kind']} here, a {actual['kind']} in the real module"]
    kind, problems = double["kind"], []
    if kind == "enum":
        problems += [f"{path}.{name} = {value}: real value {actual['members'].get(name, 'missing')}"
                     for name, value in double["members"].items() if actual["members"].get(name) != value]
    elif kind == "class":
        for name, member in double["members"].items():
            problems += mismatches(f"{path}.{name}", member, actual["members"].get(name))
    elif path.endswith(".__init__") and not actual["signatures"]:
        pass  # Python cannot construct the real class (TensorRT's factories do); the double's constructor is private
    elif kind in ("method", "function") and not compatible(double["signatures"][0], actual["signatures"]):
        problems.append(f"{path}({', '.join(double['signatures'][0])}): real {actual['signatures']}")
    elif kind == "property" and double["settable"] and not actual["settable"]:
        problems.append(f"{path}: settable here, read-only in the real module")
    elif kind == "value" and double["value"] != actual["value"]:
        problems.append(f"{path} = {double['value']}: real value {actual['value']}")
    return problems


def names(api: dict[str, dict], prefix: str = "") -> set[str]:
    """Every dotted name in a description: module attributes, enum members, class members."""
    found = set()
    for name, entry in api.items():
        found.add(prefix + name)
        if entry["kind"] == "enum":
            found |= {f"{prefix}{name}.{member}" for member in entry["members"]}
        elif entry["kind"] == "class":
            found |= names(entry["members"], f"{prefix}{name}.")
    return found


DOUBLES = {version: describe(trt_doubles.tensorrt_module(World(version))) for version in CHECKED}


@pytest.mark.parametrize("version", CHECKED)
def test_doubles_claim_only_what_the_real_bindings_have(version: str) -> None:
    dump = real(version)
    assert trt_doubles.tensorrt_module(World(version)).__version__ == dump["version"]
    problems = [problem for name, entry in DOUBLES[version].items()
                for problem in mismatches(name, entry, dump["api"].get(name))]
    assert problems == []


@pytest.mark.parametrize("version", CHECKED)
def test_what_the_doubles_leave_out_of_a_version_the_real_one_lacks_too(version: str) -> None:
    claimed = set().union(*(names(api) for api in DOUBLES.values()))
    left_out = claimed - names(DOUBLES[version])
    assert sorted(left_out & names(real(version)["api"])) == []


@pytest.mark.parametrize("version", CHECKED)
def test_nptype_returns_or_raises_what_the_real_one_does(version: str) -> None:
    trt = trt_doubles.tensorrt_module(World(version))

    def outcome(member: Any) -> str:
        try:
            return trt.nptype(member).__name__
        except Exception as exc:  # noqa: BLE001 -- the exception's type is what is compared
            return type(exc).__name__

    assert {m.name: outcome(m) for m in trt.DataType} == {name: real(version)["nptype"][name] for name in
                                                         trt.DataType.__members__}
