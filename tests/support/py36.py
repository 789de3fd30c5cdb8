"""A static check that a source file is Python 3.6 code (rbhelper and the runner run on
the site's own, often old, python). No 3.6 interpreter is at hand: the source must parse
with the 3.6 grammar and use none of the newer features listed here that the grammar
check cannot see."""

from __future__ import annotations

import ast

NEWER_ATTRS = {"UTC": "datetime.UTC (3.11)", "removeprefix": "str.removeprefix (3.9)",
               "removesuffix": "str.removesuffix (3.9)", "cache": "functools.cache (3.9)",
               "fromisoformat": "fromisoformat (3.7)", "isascii": "str.isascii (3.7)"}
NEWER_KEYWORDS = {"required": "add_subparsers(required=) (3.7)",
                  "capture_output": "subprocess capture_output (3.7)",
                  "text": "subprocess text= (3.7)"}
NEWER_MODULES = {"zoneinfo", "graphlib", "tomllib", "dataclasses", "contextvars",
                 "importlib.resources", "importlib.metadata"}


def _annotations(tree: ast.AST) -> list[ast.expr]:
    out: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
            out += [a.annotation for a in args if a.annotation is not None]
            if node.returns is not None:
                out.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            out.append(node.annotation)
    return out


def py36_problems(source: str) -> list[str]:
    """Constructs in ``source`` that Python 3.6 cannot run ([] when none)."""
    try:
        tree = ast.parse(source, feature_version=(3, 6))
    except SyntaxError as exc:
        return [f"not 3.6 syntax: {exc}"]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = {a.name for a in node.names}
            if node.module == "__future__" and "annotations" in names:
                problems.append("from __future__ import annotations (3.7)")
            if node.module == "datetime" and "UTC" in names:
                problems.append("from datetime import UTC (3.11)")
            if node.module in NEWER_MODULES:
                problems.append(f"module {node.module}")
        elif isinstance(node, ast.Import):
            problems += [f"module {a.name}" for a in node.names if a.name in NEWER_MODULES]
        elif isinstance(node, ast.Attribute) and node.attr in NEWER_ATTRS:
            problems.append(NEWER_ATTRS[node.attr])
        elif isinstance(node, ast.keyword) and node.arg in NEWER_KEYWORDS:
            problems.append(NEWER_KEYWORDS[node.arg])
        elif isinstance(node, ast.arguments) and node.posonlyargs:
            problems.append("positional-only parameters (3.8)")
    for ann in _annotations(tree):
        if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(ann)):
            problems.append(f"X | Y annotation (3.10) at line {ann.lineno}")
        if any(isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name)
               and n.value.id in ("list", "dict", "tuple", "set", "type")
               for n in ast.walk(ann)):
            problems.append(f"builtin generic annotation (3.9) at line {ann.lineno}")
    return problems
