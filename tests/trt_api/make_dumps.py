"""Dump the Python API of the real TensorRT bindings to JSON, for the contract test of tests/trt_doubles.py.

    python tests/trt_api/make_dumps.py [VERSION ...]     # default: the versions in VERSIONS below

For each version this installs the real `tensorrt-cu12-bindings` wheel from PyPI (`pip install --no-deps` into a
temporary folder), builds a stand-in libnvinfer with the C compiler (`cc`): the pybind11 module links libnvinfer,
libnvinfer_plugin and libnvonnxparser only for the nine C entry points named in ENTRY_POINTS, and a library that
exports them lets `import tensorrt_bindings` load on a machine without NVIDIA's libraries or a GPU (their wheel,
`tensorrt-cu12-libs`, downloads from NVIDIA's own index). The module's whole Python surface is then written to
tests/trt_api/tensorrt-VERSION.json: every class, enum (members and values), method and constructor (parameter
names, and which have defaults, from pybind11's docstring signatures), property (and whether it can be set), and
what `nptype` returns or raises for each DataType. Nothing in TensorRT is called: the stand-ins are never run.

When TensorRT ships a version the doubles should model, add it to VERSIONS (and trt_doubles.VERSIONS), rerun this
script and commit the new JSON; `pip index versions tensorrt-cu12-bindings` lists what PyPI has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

VERSIONS = ("10.3.0", "10.16.0.72", "11.1.0.106", "11.4.0.106")
HERE = Path(__file__).resolve().parent
ENTRY_POINTS = ("createInferBuilder_INTERNAL", "createInferRefitter_INTERNAL", "createInferRuntime_INTERNAL",
                "createNvOnnxParserRefitter_INTERNAL", "createNvOnnxParser_INTERNAL", "getBuilderPluginRegistry",
                "getNvOnnxParserVersion", "getPluginRegistry", "initLibNvInferPlugins")
LIBRARIES = ("libnvinfer", "libnvinfer_plugin", "libnvonnxparser")

DUMP = r'''
import inspect, json, re, sys
import tensorrt_bindings as trt

def split_top(text):
    """Split at commas outside brackets (types such as Dict[str, int] and defaults such as (1, 2) hold commas)."""
    parts, depth, start = [], 0, 0
    text = text.replace("->", "  ")
    for i, char in enumerate(text):
        depth += char in "([{<"
        depth -= char in ")]}>"
        if char == "," and depth == 0:
            parts.append(text[start:i]); start = i + 1
    return [p.strip() for p in parts + [text[start:]] if p.strip()]

def signatures(name, obj):
    """Each overload's parameters (self left out) as "name" or "name=" (has a default), from the docstring."""
    if inspect.isfunction(obj):
        params = list(inspect.signature(obj).parameters.values())
        return [[p.name + ("=" if p.default is not p.empty else "") for p in params if p.name != "self"]]
    found = []
    for line in (obj.__doc__ or "").splitlines():
        match = re.match(r"\s*(?:\d+\. )?" + re.escape(name) + r"\((.*)\)\s*->", line)
        if match:
            params = [p for p in split_top(match.group(1)) if not p.startswith("self")]
            found.append([p.split(":")[0].split("=")[0].strip() + ("=" if "=" in p else "") for p in params])
    return found

def enum_members(cls):
    return {name: int(value) for name, value in cls.__members__.items()}

def describe_class(cls):
    members = {}
    for name in sorted(set(dir(cls))):
        if name.startswith("_") and name != "__init__":
            continue
        raw = inspect.getattr_static(cls, name)
        value = getattr(cls, name)
        if isinstance(raw, property):
            members[name] = {"kind": "property", "settable": raw.fset is not None}
        elif isinstance(value, type) and hasattr(value, "__members__"):
            members[name] = {"kind": "enum", "members": enum_members(value)}
        elif isinstance(value, type):
            members[name] = {"kind": "class"}
        elif callable(value):
            members[name] = {"kind": "method", "signatures": signatures(name, value)}
        elif hasattr(type(value), "__members__"):
            members[name] = {"kind": "value", "value": int(value)}
        else:
            members[name] = {"kind": "value", "value": repr(value)}
    return members

api = {}
for name in sorted(dir(trt)):
    if name.startswith("_"):
        continue
    value = getattr(trt, name)
    if isinstance(value, type) and hasattr(value, "__members__"):
        api[name] = {"kind": "enum", "members": enum_members(value), "class": describe_class(value)}
    elif isinstance(value, type):
        api[name] = {"kind": "class", "bases": [b.__name__ for b in value.__bases__], "members": describe_class(value)}
    elif inspect.ismodule(value):
        api[name] = {"kind": "module"}
    elif callable(value):
        api[name] = {"kind": "function", "signatures": signatures(name, value)}
    else:
        api[name] = {"kind": "value", "value": repr(value)}

def nptype(member):
    try:
        return trt.nptype(member).__name__
    except Exception as exc:
        return type(exc).__name__

json.dump({"version": trt.__version__, "python": sys.version.split()[0], "api": api,
           "nptype": {name: nptype(member) for name, member in trt.DataType.__members__.items()}},
          sys.stdout, indent=1, sort_keys=True)
'''


def stand_in_libraries(folder: Path, major: str) -> None:
    """libnvinfer.so.MAJOR (and the plugin and parser libraries) exporting ENTRY_POINTS, each returning 0."""
    source = folder / "stand_in.c"
    source.write_text("".join(f"void *{name}(void) {{ return 0; }}\n" for name in ENTRY_POINTS))
    for library in LIBRARIES:
        name = f"{library}.so.{major}"
        subprocess.run(["cc", "-shared", "-fPIC", f"-Wl,-soname,{name}", "-o", str(folder / name), str(source)],
                       check=True)


def dump(version: str, work: Path) -> dict:
    """The API of tensorrt-cu12-bindings==version, imported against the stand-in libraries."""
    target, libraries = work / f"site-{version}", work / f"lib-{version}"
    libraries.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    f"tensorrt-cu12-bindings=={version}"], check=True)
    stand_in_libraries(libraries, version.split(".")[0])
    env = dict(os.environ, PYTHONPATH=str(target), LD_LIBRARY_PATH=str(libraries))
    result = subprocess.run([sys.executable, "-c", DUMP], env=env, check=True, capture_output=True, text=True)
    return json.loads(result.stdout)


def main(versions: list[str]) -> None:
    """Write tests/trt_api/tensorrt-VERSION.json for each version."""
    with tempfile.TemporaryDirectory() as work:
        for version in versions:
            api = dump(version, Path(work))
            path = HERE / f"tensorrt-{version}.json"
            path.write_text(json.dumps(api, indent=1, sort_keys=True) + "\n")
            print(f"{path}: TensorRT {api['version']}, {len(api['api'])} names (Python {api['python']})")


if __name__ == "__main__":
    main(sys.argv[1:] or list(VERSIONS))
