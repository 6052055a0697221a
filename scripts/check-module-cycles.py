#!/usr/bin/env python3
"""Fails when the modules of a Rust crate depend on each other in a cycle.

Usage:
    scripts/check-module-cycles.py [--workspace DIR] [SRC_DIR ...]
    scripts/check-module-cycles.py --self-test

Without SRC_DIR arguments it checks every crate source directory of the Cargo workspace
(default: the repository this script belongs to): the root `src/` when the root manifest
has a `[package]`, and `<member>/src` for each entry of `[workspace] members` (glob
patterns such as `crates/*` expand to the member directories they match). It exits 1 and
prints every cycle it finds, 0 with a one-line summary otherwise, 2 on a usage error.

Definition checked:

* Modules are files. `src/lib.rs` and `src/main.rs` are the crate root; `foo.rs` and
  `foo/mod.rs` are module `foo`; `foo/bar.rs` (next to `foo.rs` or `foo/mod.rs`) is
  `foo::bar`. Only files declared by a `mod name;` of their parent are modules (an
  undeclared file is not compiled). Inline `mod name { ... }` blocks belong to their file.
  Each binary of `src/bin/` (`bin/x.rs`, `bin/x/main.rs`) is a crate of its own, with its
  modules next to its root file, as are `[lib]`/`[[bin]]` paths of the package's manifest.
* Test code is ignored, as test code may reach anywhere: every item under `#[cfg(test)]`
  (inline `mod tests { ... }`, functions, `use` lines) and every file declared by a
  `#[cfg(test)] mod name;` (with its descendants), or starting with `#![cfg(test)]`.
  Comments (doc comments included) and string literals are ignored too.
* References: every path of a `use` declaration (`pub(crate) use`, nested brace groups,
  `self`, renames and globs), and every path in the code (`crate::redact::redact(&x)`,
  `super::Sealer`, `Selection::parse(...)`). A path is resolved from `crate::`, `$crate::`,
  the crate's own name, `self::` and `super::`, from a child module of the current module,
  or through a name the file imports with `use`; other paths (std, other crates, local
  names) are not references. A resolved path targets the longest prefix of it that is a
  module; an item re-exported by a module counts as that module's (`crate::Error`
  re-exported by `lib.rs` targets the root).
* Edges: a reference from module X to module T is an edge between the two sibling modules
  at the level where the module paths of X and T diverge: `read::changes` using
  `crate::read::delivery::Y` is the edge changes -> delivery among `read`'s children;
  `read::changes` using `crate::state::Z` is read -> state among the root's children. A
  reference between a module and its own ancestor or descendant (`use super::*`, a parent
  using its child) is hierarchy, not a dependency, and is ignored.
* A cycle among the siblings of any level fails. Each cycle is printed as
  `a -> b -> a`, with the file and line of one reference for each edge.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

IDENT = r"(?:r#)?[A-Za-z_][A-Za-z0-9_]*"
KEYWORD_ROOTS = {"crate", "self", "super", "$crate"}


# ---------------------------------------------------------------------------------------------
# Lexing: blank out comments and literals, then test-only items, keeping offsets and lines.


def blank(text: str, start: int, end: int, out: list[str]) -> None:
    for i in range(start, end):
        if out[i] != "\n":
            out[i] = " "


def strip_comments_and_literals(src: str) -> str:
    """The source with comments and the contents of string/char literals replaced by
    spaces (newlines kept, so offsets and line numbers stay valid)."""
    out = list(src)
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "/" and src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(src, i, j, out)
            i = j
        elif c == "/" and src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(src, i, j, out)
            i = j
        elif (
            c in "rb"
            and (m := re.match(r"(?:br|rb|r)(#*)\"", src[i : i + 260]))
            and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_"))
        ):
            close = '"' + m.group(1)
            j = src.find(close, i + len(m.group(0)))
            j = n if j < 0 else j + len(close)
            blank(src, i + 1, j - 1, out)
            i = j
        elif c == '"' or (c == "b" and src.startswith('b"', i) and not _ident_before(src, i)):
            j = i + (2 if c == "b" else 1)
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            blank(src, i + 1, j, out)
            i = j + 1
        elif c == "'" or (c == "b" and src.startswith("b'", i) and not _ident_before(src, i)):
            q = i + (1 if c == "b" else 0)
            if src.startswith("\\", q + 1):
                j = src.find("'", q + 2 + (1 if src.startswith("'", q + 2) else 0))
                j = n if j < 0 else j
                blank(src, q + 1, j, out)
                i = j + 1
            elif q + 2 < n and src[q + 2] == "'":
                blank(src, q + 1, q + 2, out)
                i = q + 3
            else:  # a lifetime or label
                i = q + 1
        elif c.isalnum() or c == "_":
            j = i
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            i = j
        else:
            i += 1
    return "".join(out)


def _ident_before(src: str, i: int) -> bool:
    return i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_")


def matching(text: str, open_at: int) -> int:
    """Offset just past the bracket closing the one at `open_at`."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    stack = []
    i = open_at
    while i < len(text):
        ch = text[i]
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch in ")]}":
            if stack and stack[-1] == ch:
                stack.pop()
            if not stack:
                return i + 1
        i += 1
    return len(text)


CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
INNER_CFG_TEST = re.compile(r"#\s*!\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")


def item_end(text: str, i: int) -> int:
    """Offset just past the item starting at `i`: its `;` or its balanced `{...}` block,
    after any further attributes."""
    n = len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if text.startswith("#", i):
            j = i + 1
            while j < n and text[j].isspace():
                j += 1
            if j < n and text[j] == "[":
                i = matching(text, j)
                continue
        break
    while i < n:
        ch = text[i]
        if ch in "([":
            i = matching(text, i)
        elif ch == "{":
            return matching(text, i)
        elif ch == ";":
            return i + 1
        else:
            i += 1
    return n


def strip_test_items(text: str) -> tuple[str, list[str]]:
    """Blanks every `#[cfg(test)]` item; returns the text and the names of the modules
    declared test-only by `#[cfg(test)] mod name;`."""
    out = list(text)
    test_mods = []
    for m in CFG_TEST.finditer(text):
        if out[m.start()] == " ":  # inside an item already removed
            continue
        end = item_end(text, m.end())
        decl = re.search(rf"\bmod\s+({IDENT})\s*;\s*$", text[m.end() : end])
        if decl:
            test_mods.append(decl.group(1).removeprefix("r#"))
        blank(text, m.start(), end, out)
    return "".join(out), test_mods


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# ---------------------------------------------------------------------------------------------
# Crate model.


@dataclass
class Module:
    path: tuple[str, ...]
    file: Path
    code: str = ""  # comments, literals and test items blanked
    children: set[str] = field(default_factory=set)


@dataclass
class Crate:
    src: Path
    name: str | None
    modules: dict[tuple[str, ...], Module] = field(default_factory=dict)


MOD_DECL = re.compile(rf"\bmod\s+({IDENT})\s*([;{{])")


def inline_modules(code: str) -> list[tuple[int, int, str]]:
    """Spans `(start, end, name)` of the inline `mod name { ... }` blocks of a file."""
    spans = []
    for m in MOD_DECL.finditer(code):
        if m.group(2) == "{":
            spans.append((m.end() - 1, matching(code, m.end() - 1), m.group(1).removeprefix("r#")))
    return spans


def inline_path(spans: list[tuple[int, int, str]], offset: int) -> tuple[str, ...]:
    return tuple(name for start, end, name in spans if start < offset < end)


def module_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / f"{name}.rs", directory / name / "mod.rs"):
        if candidate.is_file():
            return candidate
    return None


def crate_roots(src: Path) -> list[tuple[Path, list[Path]]]:
    """The module trees of a source directory, as `(label, root files)`: `lib.rs` and
    `main.rs` (and the `[lib]`/`[[bin]]` paths of the package's manifest inside the
    directory) share one tree, as the binary uses the library by its name; every other
    binary (`bin/<name>.rs`, `bin/<name>/main.rs`) is a tree of its own."""
    main: list[Path] = [f for f in (src / "lib.rs", src / "main.rs") if f.is_file()]
    bins: list[Path] = sorted(src.glob("bin/*.rs")) + sorted(src.glob("bin/*/main.rs"))
    try:
        manifest = tomllib.loads((src.parent / "Cargo.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        manifest = {}
    declared = [manifest.get("lib", {}).get("path")]
    declared += [b.get("path") for b in manifest.get("bin", []) if isinstance(b, dict)]
    for d in declared:
        if isinstance(d, str):
            f = (src.parent / d).resolve()
            if f.is_file() and src in f.parents and f not in main and f not in bins:
                (bins if "bin" in f.relative_to(src).parts else main).append(f)
    trees = [(src, main)] if main else []
    return trees + [(f, [f]) for f in bins]


def load_crate(src: Path, name: str | None, roots: list[Path]) -> Crate:
    crate = Crate(src=src, name=name)
    queue: list[tuple[tuple[str, ...], Path]] = [((), f) for f in roots]
    seen: set[Path] = set()
    while queue:
        path, file = queue.pop()
        if file in seen:
            continue
        seen.add(file)
        raw = file.read_text(encoding="utf-8", errors="replace")
        code = strip_comments_and_literals(raw)
        if INNER_CFG_TEST.search(code[:2000]) and path:
            continue
        code, _test_mods = strip_test_items(code)
        module = crate.modules.setdefault(path, Module(path=path, file=file))
        module.code = module.code + "\n" + code if module.code else code
        # Child files live in `foo/` for `foo.rs` and `foo/mod.rs`, next to a crate root.
        if not path or file.name == "mod.rs":
            directory = file.parent
        else:
            directory = file.parent / file.stem
        spans = inline_modules(code)
        for m in MOD_DECL.finditer(code):
            if m.group(2) != ";":
                continue
            name_ = m.group(1).removeprefix("r#")
            inner = inline_path(spans, m.start())
            child_dir = directory.joinpath(*inner)
            child = module_file(child_dir, name_)
            if child is None:
                continue
            child_path = path + inner + (name_,)
            if not inner:
                module.children.add(name_)
            queue.append((child_path, child))
    return crate


# ---------------------------------------------------------------------------------------------
# References.


@dataclass
class Reference:
    segments: list[str]
    offset: int
    inner: tuple[str, ...]  # inline modules around the reference


USE_START = re.compile(r"(?<![A-Za-z0-9_$])use\s")
TOKEN = re.compile(rf"\s*(::|\{{|\}}|,|\*|;|\$crate|{IDENT})")


def parse_use_tree(
    code: str, pos: int, prefix: list[str], out: list[tuple[list[str], int, str | None]]
) -> int:
    """Parses one use tree at `pos`; appends `(path, offset, imported name)` (name `None`
    for a glob) and returns the offset after the tree."""
    segments = list(prefix)
    while True:
        m = TOKEN.match(code, pos)
        if not m:
            return pos
        tok, start = m.group(1), m.start(1)
        if tok == "::":
            pos = m.end()
            continue
        if tok == "*":
            out.append((segments, start, None))
            return m.end()
        if tok == "{":
            pos = m.end()
            while True:
                pos = parse_use_tree(code, pos, segments, out)
                m2 = TOKEN.match(code, pos)
                if not m2:
                    return pos
                pos = m2.end()
                if m2.group(1) == "}":
                    return pos
                if m2.group(1) != ",":
                    return pos
                nxt = TOKEN.match(code, pos)
                if nxt and nxt.group(1) == "}":
                    return nxt.end()
        if tok in {",", "}", ";"}:
            return pos
        # An identifier: more path follows, or this is the leaf (maybe renamed).
        pos = m.end()
        nxt = TOKEN.match(code, pos)
        if nxt and nxt.group(1) == "::":
            segments = [*segments, tok.removeprefix("r#")]
            pos = nxt.end()
            continue
        name = tok.removeprefix("r#")
        leaf = segments if name == "self" else [*segments, name]
        imported = segments[-1] if name == "self" and segments else name
        if nxt and nxt.group(1) == "as":
            alias = TOKEN.match(code, nxt.end())
            if alias:
                imported = alias.group(1).removeprefix("r#")
                pos = alias.end()
        out.append((leaf, start, imported))
        return pos


def use_declarations(
    code: str,
) -> tuple[list[tuple[list[str], int, str | None]], list[tuple[int, int]]]:
    """Every leaf path of every `use` declaration, and the spans of the declarations."""
    leaves: list[tuple[list[str], int, str | None]] = []
    spans = []
    for m in USE_START.finditer(code):
        end = code.find(";", m.end())
        end = len(code) if end < 0 else end + 1
        if spans and m.start() < spans[-1][1]:
            continue
        parse_use_tree(code, m.end(), [], leaves)
        spans.append((m.start(), end))
    return leaves, spans


PATH = re.compile(rf"(?<![A-Za-z0-9_:])(?:\$crate|{IDENT})(?:\s*::\s*{IDENT})+")


def code_paths(code: str) -> list[tuple[list[str], int]]:
    found = []
    for m in PATH.finditer(code):
        segments = [s.strip().removeprefix("r#") for s in m.group(0).split("::")]
        found.append((segments, m.start()))
    return found


@dataclass(frozen=True)
class Edge:
    parent: tuple[str, ...]
    source: str
    target: str


@dataclass
class Location:
    file: Path
    line: int
    text: str


def resolve(
    crate: Crate,
    here: tuple[str, ...],
    segments: list[str],
    imports: dict[str, list[str]],
) -> tuple[str, ...] | None:
    """The absolute module-or-item path a reference names, or `None` when it does not
    name anything of this crate."""
    if not segments:
        return None
    first, rest = segments[0], segments[1:]
    if first in {"crate", "$crate"} or (crate.name and first == crate.name):
        return tuple(rest)
    if first in {"self", "super"}:
        base = list(here)
        while segments and segments[0] in {"self", "super"}:
            if segments[0] == "super":
                if not base:
                    return None
                base.pop()
            segments = segments[1:]
        return tuple(base + segments)
    if first in imports:
        return tuple(imports[first] + rest)
    if (*here, first) in crate.modules:
        return here + tuple(segments)
    return None


def target_module(crate: Crate, absolute: tuple[str, ...]) -> tuple[str, ...]:
    for k in range(len(absolute), -1, -1):
        if absolute[:k] in crate.modules:
            return absolute[:k]
    return ()


def crate_edges(crate: Crate) -> dict[Edge, Location]:
    edges: dict[Edge, Location] = {}
    for module in crate.modules.values():
        code = module.code
        spans = inline_modules(code)
        leaves, use_spans = use_declarations(code)
        refs: list[tuple[list[str], int]] = [(p, off) for p, off, _ in leaves]
        blanked = list(code)
        for start, end in use_spans:
            blank(code, start, end, blanked)
        refs += code_paths("".join(blanked))

        # Imports by name, resolved in the file's own scope (inline modules: approximated
        # by the scope of the declaration).
        imports: dict[str, list[str]] = {}
        for path, offset, name in leaves:
            if name is None or name == "*":
                continue
            here = module.path + inline_path(spans, offset)
            absolute = resolve(crate, here, path, {})
            if absolute is not None:
                imports[name] = list(absolute)

        for segments, offset in refs:
            here = module.path + inline_path(spans, offset)
            absolute = resolve(crate, here, segments, imports)
            if absolute is None:
                continue
            source, target = module.path, target_module(crate, absolute)
            k = 0
            while k < min(len(source), len(target)) and source[k] == target[k]:
                k += 1
            if k == len(source) or k == len(target):
                continue  # the same module, an ancestor or a descendant: hierarchy
            edge = Edge(parent=source[:k], source=source[k], target=target[k])
            if edge not in edges:
                edges[edge] = Location(
                    file=module.file,
                    line=line_of(code, offset),
                    text="::".join(segments),
                )
    return edges


# ---------------------------------------------------------------------------------------------
# Cycles.


def strongly_connected(nodes: set[str], succ: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            result.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return [c for c in result if len(c) > 1]


def shortest_path(
    start: str, goal: str, succ: dict[str, set[str]], allowed: set[str]
) -> list[str] | None:
    previous = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(succ.get(v, ())):
                if w in allowed and w not in previous:
                    previous[w] = v
                    if w == goal:
                        path = [w]
                        while previous[path[-1]] is not None:
                            path.append(previous[path[-1]])
                        return path[::-1]
                    nxt.append(w)
        frontier = nxt
    return None


def find_cycles(edges: dict[Edge, Location]) -> list[tuple[tuple[str, ...], list[str]]]:
    """For every edge inside a strongly connected group of siblings, the shortest cycle
    through it (deduplicated by rotation)."""
    by_parent: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for e in edges:
        by_parent.setdefault(e.parent, {}).setdefault(e.source, set()).add(e.target)
    cycles = []
    for parent in sorted(by_parent):
        succ = by_parent[parent]
        nodes = set(succ) | {t for ts in succ.values() for t in ts}
        seen: set[tuple[str, ...]] = set()
        for comp in strongly_connected(nodes, succ):
            members = set(comp)
            for a in comp:
                for b in sorted(succ.get(a, ())):
                    if b not in members:
                        continue
                    back = shortest_path(b, a, succ, members) if b != a else [a]
                    if back is None:
                        continue
                    cycle = [a, *back]
                    ring = cycle[:-1]
                    k = ring.index(min(ring))
                    canonical = tuple(ring[k:] + ring[:k])
                    if canonical in seen:
                        continue
                    seen.add(canonical)
                    cycles.append((parent, [*list(canonical), canonical[0]]))
    return cycles


# ---------------------------------------------------------------------------------------------
# Workspace discovery and reporting.


def package_name(manifest: Path) -> str | None:
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    name = data.get("lib", {}).get("name") or data.get("package", {}).get("name")
    return name.replace("-", "_") if isinstance(name, str) else None


def workspace_src_dirs(root: Path) -> list[Path]:
    manifest = root / "Cargo.toml"
    data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    members = data.get("workspace", {}).get("members", [])
    excluded = {(root / e).resolve() for e in data.get("workspace", {}).get("exclude", [])}
    dirs: list[Path] = []
    if "package" in data:
        dirs.append(root)
    for pattern in members:
        matches = (
            sorted(glob.glob(str(root / pattern)))
            if glob.has_magic(pattern)
            else [str(root / pattern)]
        )
        for m in matches:
            member = Path(m)
            if (member / "Cargo.toml").is_file() and member.resolve() not in excluded:
                dirs.append(member)
    out: list[Path] = []
    for d in dirs:
        src = (d / "src").resolve()
        if src.is_dir() and src not in out:
            out.append(src)
    return out


def display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def module_name(parent: tuple[str, ...], child: str) -> str:
    return "::".join((*parent, child))


def check(src_dirs: list[Path]) -> int:
    failed = False
    total_crates = total_modules = total_edges = 0
    for src in src_dirs:
        if not src.is_dir():
            print(f"check-module-cycles: {display(src)} is not a directory", file=sys.stderr)
            return 2
        trees = crate_roots(src)
        if not trees:
            print(f"check-module-cycles: {display(src)} has no crate root (lib.rs, main.rs, bin/)")
        for label, roots in trees:
            crate = load_crate(src, package_name(src.parent / "Cargo.toml"), roots)
            edges = crate_edges(crate)
            total_crates += 1
            total_modules += len(crate.modules)
            total_edges += len(edges)
            for parent, cycle in find_cycles(edges):
                failed = True
                level = "the crate root" if not parent else "`" + "::".join(parent) + "`"
                names = [module_name(parent, c) for c in cycle]
                print(
                    f"{display(label)}: module cycle among the children of {level}: "
                    + " -> ".join(names)
                )
                for a, b in itertools.pairwise(cycle):
                    loc = edges[Edge(parent, a, b)]
                    print(
                        f"    {module_name(parent, a)} -> {module_name(parent, b)}: "
                        f"{display(loc.file)}:{loc.line} ({loc.text})"
                    )
    if failed:
        return 1
    print(
        f"check-module-cycles: no module cycle in {total_crates} crate(s) of "
        f"{len(src_dirs)} source dir(s) ({total_modules} modules, {total_edges} edges between "
        "sibling modules checked)"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# Self-test.

SELF_TEST_CRATES = {
    "cyclic": {
        "Cargo.toml": '[package]\nname = "cyclic-crate"\nversion = "0.1.0"\n',
        "src/lib.rs": "mod a;\nmod b;\npub use a::A;\n",
        "src/a.rs": "use crate::b::{self, B};\npub struct A;\npub fn f() { b::g(); }\n",
        "src/b.rs": (
            "pub struct B;\npub fn g() {}\npub fn h() -> usize { cyclic_crate::a::f(); 0 }\n"
        ),
    },
    "acyclic": {
        "Cargo.toml": '[package]\nname = "acyclic"\nversion = "0.1.0"\n',
        "src/lib.rs": "mod a;\nmod b;\nmod c;\npub use a::A;\n",
        "src/a.rs": (
            "//! Uses b and c: crate::b::B in a comment is no reference.\n"
            "use crate::{\n    b::{self, B},\n    c::C as Renamed,\n};\n"
            "pub(crate) use super::c::*;\n"
            'pub struct A(B, Renamed);\npub fn f() { b::g(); let _ = "crate::b::x"; }\n'
        ),
        "src/b.rs": (
            "mod inner;\npub struct B;\npub fn g() { inner::h(); crate::c::k(); }\n"
            "#[cfg(test)]\nmod tests {\n    use crate::a::A;\n"
            "    #[test]\n    fn t() { let _ = crate::a::f; }\n}\n"
            "#[cfg(test)]\nmod test_only;\n"
        ),
        "src/b/inner.rs": "use super::*;\npub fn h() { let _ = super::B; }\n",
        "src/b/test_only.rs": "use crate::a::A;\n",
        "src/c.rs": "pub struct C;\n"
        "pub fn k() { let _: &str = r#\"crate::a::A\"#; let _ = 'x'; }\n",
    },
}


def self_test() -> int:
    script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        for crate, files in SELF_TEST_CRATES.items():
            for rel, text in files.items():
                p = Path(tmp) / crate / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text, encoding="utf-8")
        ws = Path(tmp)
        (ws / "Cargo.toml").write_text('[workspace]\nmembers = ["acyclic"]\n', encoding="utf-8")
        runs = {
            "cyclic": [str(ws / "cyclic" / "src")],
            "acyclic": [str(ws / "acyclic" / "src")],
            "workspace": ["--workspace", str(ws)],
        }
        results = {
            k: subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
            for k, args in runs.items()
        }
    ok = True

    def expect(condition: bool, what: str) -> None:
        nonlocal ok
        print(f"self-test: {'ok  ' if condition else 'FAIL'} {what}")
        ok &= condition

    cyc = results["cyclic"]
    expect(cyc.returncode == 1, "a crate with a cycle fails")
    expect("a -> b -> a" in cyc.stdout, "the cycle is printed as a -> b -> a")
    expect("a.rs:1 " in cyc.stdout and "b.rs:3 " in cyc.stdout, "each edge names a file and line")
    acy = results["acyclic"]
    expect(acy.returncode == 0, "a crate without a cycle passes")
    expect(
        "3 edges" in acy.stdout,
        "only a -> b, a -> c and b -> c count (comments, literals, tests and hierarchy do not)",
    )
    expect(results["workspace"].returncode == 0, "the workspace members are found")
    if not ok:
        for k, r in results.items():
            print(f"--- {k} (exit {r.returncode})\n{r.stdout}{r.stderr}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src_dirs", nargs="*", type=Path, help="crate source directories")
    parser.add_argument(
        "--workspace", type=Path, help="Cargo workspace root (default: this repository)"
    )
    parser.add_argument(
        "--self-test", action="store_true", help="check this script on two small crates"
    )
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    dirs = args.src_dirs
    if not dirs:
        root = args.workspace or Path(__file__).resolve().parent.parent
        dirs = workspace_src_dirs(root)
    return check([d.resolve() for d in dirs])


if __name__ == "__main__":
    sys.exit(main())
