#!/usr/bin/env python3
"""Finds import cycles between the module files of each crate (crates/*/src).

A module is a file (a folder's mod.rs is the folder's module). Module A depends on
module B when A names an item that B defines: through `use` (crate::, super::, self::,
or a child module's name), a path in code (`crate::x::f()`, `super::y::Z`), or a name
that the module it names re-exports (`pub use child::X` in a mod.rs leads to the child
that defines X). Each path is followed to the file that defines what it names.

Edges between a module and one of its ancestors are not counted: a child that uses its
parent's items (`super::X`) and a parent that declares and re-exports its children form
a tree, not a cycle. Every other edge is lifted to the two siblings under the modules'
lowest common ancestor (`api/web.rs` -> `openapi.rs` is `api` -> `openapi` under the
crate root), and the siblings of every module must form an acyclic graph. So a cycle is
"A uses something defined in B and B uses something defined in A (directly or through
others), where neither is an ancestor of the other".

Test code is not counted: items under `#[cfg(test)]` (`mod tests`, test-only `use`s),
since a unit test may build what it tests through the crate's composition root.

Usage: scripts/module-cycles.py [--edges] [CRATE_DIR ...]   (default: every crates/*)
Prints each cycle with the lines that make it; exits 1 if there is any. `--edges` also
prints every dependency between sibling modules, with the first line that makes it.
"""

from __future__ import annotations

import re
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

ITEM_KEYWORDS = {"fn", "struct", "enum", "trait", "type", "const", "static", "union"}
TEST_CFG = re.compile(r"#\s*\[\s*cfg\s*\(\s*(?:test|all\s*\(\s*test\b[^\]]*)\s*\)\s*\]")
TOKEN = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]*|::|\S")


SPECIAL = re.compile(r"//|/\*|(?<![A-Za-z0-9_])b?r#*\"|(?<![A-Za-z0-9_])b?\"|\"|'")


def blank(s: str) -> str:
    return "".join(c if c == "\n" else " " for c in s)


def strip(text: str) -> str:
    """The source with comments, strings and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while (m := SPECIAL.search(text, i)) is not None:
        out.append(text[i:m.start()])
        i, tok = m.start(), m.group(0)
        if tok == "//":
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif tok == "/*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
        elif "r" in tok:
            close = '"' + "#" * tok.count("#")
            j = text.find(close, m.end())
            j = n if j < 0 else j + len(close)
        elif tok.endswith('"'):
            j = m.end()
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
        elif i + 1 < n and text[i + 1] == "\\":
            # A char literal: '\n', '\u{1F600}'.
            j = text.find("'", i + 3)
            j = n if j < 0 else j + 1
        elif i + 2 < n and text[i + 2] == "'":
            j = i + 3  # 'a'
        else:
            out.append("'")  # a lifetime
            i += 1
            continue
        out.append(blank(text[i:j]))
        i = j
    out.append(text[i:])
    return "".join(out)


def item_end(text: str, start: int) -> int:
    """The end of the item starting at `start`: its `;` or its closing brace."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == ";" and depth == 0:
            return i + 1
        elif c == "{" and depth == 0:
            braces = 0
            while i < len(text):
                if text[i] == "{":
                    braces += 1
                elif text[i] == "}":
                    braces -= 1
                    if braces == 0:
                        return i + 1
                i += 1
            return len(text)
        i += 1
    return len(text)


def drop_test_code(text: str) -> str:
    """Blanks every item under `#[cfg(test)]`."""
    while m := TEST_CFG.search(text):
        end = item_end(text, m.end())
        text = text[:m.start()] + blank(text[m.start():end]) + text[end:]
    return text


@dataclass
class Module:
    path: tuple[str, ...]
    file: Path
    parent: Module | None
    inline: bool = False
    children: dict[str, Module] = field(default_factory=dict)
    items: set[str] = field(default_factory=set)
    # name -> (module the `use` is in, its path segments)
    imports: dict[str, tuple[Module, list[str]]] = field(default_factory=dict)
    globs: list[tuple[Module, list[str]]] = field(default_factory=list)

    @property
    def file_module(self) -> Module:
        m = self
        while m.inline and m.parent is not None:
            m = m.parent
        return m


@dataclass
class Ref:
    """A path named at `line` of the file of `module`."""
    module: Module
    segs: list[str]
    line: int
    text: str


def parse_use_tree(tokens: list[tuple[str, int]], i: int, prefix: list[str], out: list) -> int:
    """Parses one use tree at tokens[i]; appends (segments, alias, glob). Returns the next index."""
    segs = list(prefix)
    while i < len(tokens):
        tok = tokens[i][0]
        if tok == "{":
            i += 1
            while i < len(tokens) and tokens[i][0] != "}":
                i = parse_use_tree(tokens, i, segs, out)
                if i < len(tokens) and tokens[i][0] == ",":
                    i += 1
            return i + 1
        if tok == "*":
            out.append((segs, None, True))
            return i + 1
        if tok == "::":
            i += 1
            continue
        if re.match(r"\$?[A-Za-z_]", tok):
            segs.append(tok)
            i += 1
            if i < len(tokens) and tokens[i][0] == "::":
                continue
            alias = None
            if i + 1 < len(tokens) and tokens[i][0] == "as":
                alias = tokens[i + 1][0]
                i += 2
            if segs[-1] == "self":
                segs = segs[:-1]
                alias = alias or (segs[-1] if segs else None)
            out.append((segs, alias or (segs[-1] if segs else None), False))
            return i
        return i + 1
    return i


class Crate:
    def __init__(self, root_file: Path, src: Path, label: str):
        self.src = src
        self.label = label
        self.root = Module((), root_file, None)
        self.refs: list[Ref] = []
        self.uses: list[Ref] = []
        self.load(self.root)

    def load(self, module: Module) -> None:
        text = drop_test_code(strip(module.file.read_text(encoding="utf-8")))
        if re.match(r"\s*#\s*!\s*\[\s*cfg\s*\(\s*test\s*\)", text):
            return
        tokens = []
        line, seen = 1, 0
        for m in TOKEN.finditer(text):
            line += text.count("\n", seen, m.start())
            seen = m.start()
            tokens.append((m.group(0), line))
        self.parse(module, tokens)

    def child_file(self, module: Module, name: str) -> Path | None:
        f = module.file
        base = f.parent if f.name in ("mod.rs", "lib.rs", "main.rs") or module.parent is None else f.parent / f.stem
        # Inline modules nest their files' folders.
        inline = []
        m = module
        while m.inline:
            inline.append(m.path[-1])
            m = m.parent
        for part in reversed(inline):
            base = base / part
        for cand in (base / f"{name}.rs", base / name / "mod.rs"):
            if cand.is_file():
                return cand
        return None

    def parse(self, module: Module, tokens: list[tuple[str, int]]) -> None:
        # A stack of scopes: the Module whose items are declared at this depth, or None
        # inside a block (fn body, impl, struct) where only uses and paths are looked at.
        stack: list[Module | None] = [module]
        i = 0
        while i < len(tokens):
            tok, line = tokens[i]
            scope = stack[-1]
            prev = tokens[i - 1][0] if i else ""
            if tok == "{":
                stack.append(None)
                i += 1
                continue
            if tok == "}":
                if len(stack) > 1:
                    stack.pop()
                i += 1
                continue
            if tok == "mod" and scope is not None and i + 2 < len(tokens) and prev != "::":
                name, after = tokens[i + 1][0], tokens[i + 2][0]
                child = Module(scope.path + (name,), scope.file, scope)
                scope.children[name] = child
                if after == ";":
                    f = self.child_file(scope, name)
                    if f is not None:
                        child.file = f
                        self.load(child)
                    i += 3
                    continue
                if after == "{":
                    child.inline = True
                    stack.append(child)
                    i += 3
                    continue
            if tok == "use" and prev != "::":
                j = i + 1
                while j < len(tokens) and tokens[j][0] != ";":
                    j += 1
                trees: list = []
                parse_use_tree(tokens[i + 1:j], 0, [], trees)
                ctx = scope if scope is not None else self.enclosing(stack)
                for segs, alias, glob in trees:
                    if not segs:
                        continue
                    text = "::".join(segs) + ("::*" if glob else "")
                    self.uses.append(Ref(ctx, segs, line, text))
                    if scope is not None:
                        if glob:
                            scope.globs.append((ctx, segs))
                        elif alias and alias != "_":
                            scope.imports[alias] = (ctx, segs)
                i = j + 1
                continue
            if scope is not None and tok in ITEM_KEYWORDS and i + 1 < len(tokens) and prev != "::":
                name = tokens[i + 1][0]
                if re.match(r"[A-Za-z_]", name):
                    scope.items.add(name)
            if tok == "macro_rules" and i + 2 < len(tokens) and scope is not None:
                scope.items.add(tokens[i + 2][0])
            # A path: `crate::…`, `super::…`, `self::…`, or `name::…` (a child module or an
            # imported name; anything else is another crate or an item of this module).
            if re.match(r"\$?[A-Za-z_]", tok) and prev != "::" and i + 1 < len(tokens) and tokens[i + 1][0] == "::":
                segs = [tok]
                j = i + 1
                while j + 1 < len(tokens) and tokens[j][0] == "::" and re.match(r"[A-Za-z_]", tokens[j + 1][0]):
                    segs.append(tokens[j + 1][0])
                    j += 2
                self.refs.append(Ref(self.enclosing(stack), segs, line, "::".join(segs)))
                i = j
                continue
            i += 1

    @staticmethod
    def enclosing(stack: list[Module | None]) -> Module:
        for m in reversed(stack):
            if m is not None:
                return m
        raise AssertionError("the file's module is at the bottom of the stack")

    # Resolution: a path from a module to the module (file) that defines what it names.

    def start(self, ctx: Module, segs: list[str], depth: int) -> tuple[Module, list[str]] | None:
        first = segs[0]
        if first in ("crate", "$crate"):
            return self.root, segs[1:]
        if first == "self":
            return ctx, segs[1:]
        if first == "super":
            m, k = ctx, 0
            while k < len(segs) and segs[k] == "super":
                if m.parent is None:
                    return None
                m, k = m.parent, k + 1
            return m, segs[k:]
        if first in ctx.children:
            return ctx, segs
        if first in ctx.imports:
            found = self.resolve_import(ctx, first, depth)
            if found is None:
                return None
            target, is_module = found
            if is_module:
                return target, segs[1:]
            return target, []
        return None

    def resolve_import(self, module: Module, name: str, depth: int) -> tuple[Module, bool] | None:
        ctx, segs = module.imports[name]
        return self.walk(ctx, segs, depth + 1)

    def walk(self, ctx: Module, segs: list[str], depth: int = 0) -> tuple[Module, bool] | None:
        """(the module that defines what `segs` names, whether it names the module itself);
        None for another crate's items."""
        if depth > 32 or not segs:
            return None
        begun = self.start(ctx, segs, depth)
        if begun is None:
            return None
        cur, rest = begun
        for s in rest:
            if s in cur.children:
                cur = cur.children[s]
                continue
            if s in cur.items:
                return cur, False
            if s in cur.imports:
                found = self.resolve_import(cur, s, depth)
                if found is None:
                    return cur, False
                target, is_module = found
                if is_module:
                    cur = target
                    continue
                return target, False
            for gctx, gsegs in cur.globs:
                found = self.walk(gctx, gsegs + [s], depth + 1)
                if found is not None and found[0] is not cur and (s in found[0].items or found[1]):
                    return found
            return cur, False
        return cur, True


def crate_roots(crate_dir: Path) -> list[tuple[Path, str]]:
    src = crate_dir / "src"
    roots = []
    if (src / "lib.rs").is_file():
        roots.append((src / "lib.rs", "lib"))
    if (src / "main.rs").is_file():
        roots.append((src / "main.rs", "bin"))
    if (src / "bin").is_dir():
        for f in sorted((src / "bin").glob("*.rs")):
            roots.append((f, f"bin {f.stem}"))
        for f in sorted((src / "bin").glob("*/main.rs")):
            roots.append((f, f"bin {f.parent.name}"))
    return roots


def shown_path(path: Path, top: Path) -> str:
    return str(path.relative_to(top)) if path.is_relative_to(top) else str(path)


def name(path: tuple[str, ...]) -> str:
    return "::".join(path) if path else "crate"


def cycles(crate: Crate, top: Path, edges: bool = False) -> list[str]:
    """Every strongly connected group of sibling modules, as report lines (and, with
    `edges`, every dependency between siblings first)."""
    # (parent path) -> {child: {child: first witness}}
    graphs: dict[tuple[str, ...], dict[str, dict[str, str]]] = {}
    for ref in crate.uses + crate.refs:
        found = crate.walk(ref.module, ref.segs)
        if found is None:
            continue
        a = ref.module.file_module.path
        b = found[0].file_module.path
        if a[:len(b)] == b or b[:len(a)] == a:
            continue  # the same file, or an ancestor and its descendant
        k = 0
        while a[k] == b[k]:
            k += 1
        parent, x, y = a[:k], a[k], b[k]
        rel = shown_path(ref.module.file_module.file, top)
        target = shown_path(found[0].file_module.file, top)
        witness = f"{rel}:{ref.line} names {ref.text} ({target})"
        graphs.setdefault(parent, {}).setdefault(x, {}).setdefault(y, witness)
    if edges:
        for parent, graph in sorted(graphs.items()):
            for x in sorted(graph):
                for y in sorted(graph[x]):
                    print(f"{crate.label}: {name(parent)}: {x} -> {y}: {graph[x][y]}")
    out = []
    for parent, graph in sorted(graphs.items()):
        for group in strongly_connected(graph):
            if len(group) < 2:
                continue
            out.append(f"{crate.label}: modules of {name(parent)} in a cycle: {', '.join(sorted(group))}")
            shown = set()
            for start in sorted(group):
                loop = shortest_cycle(graph, start, group)
                key = frozenset(zip(loop, loop[1:]))
                if key in shown:
                    continue
                shown.add(key)
                out.append("  " + " -> ".join(loop))
                for x, y in zip(loop, loop[1:]):
                    out.append(f"    {x} -> {y}: {graph[x][y]}")
    return out


def strongly_connected(graph: dict[str, dict[str, str]]) -> list[set[str]]:
    nodes = set(graph) | {y for edges in graph.values() for y in edges}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    groups: list[set[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            groups.append(group)

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return groups


def shortest_cycle(graph: dict[str, dict[str, str]], start: str, group: set[str]) -> list[str]:
    """The shortest path from `start` back to itself within `group`."""
    prev: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph.get(v, {})):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w in group and w not in prev:
                prev[w] = v
                queue.append(w)
    return [start]


def main(argv: list[str]) -> int:
    top = Path(__file__).resolve().parent.parent
    edges = "--edges" in argv
    argv = [a for a in argv if a != "--edges"]
    dirs = [Path(a).resolve() for a in argv] or sorted(p for p in (top / "crates").iterdir() if (p / "src").is_dir())
    found = []
    for crate_dir in dirs:
        for root_file, kind in crate_roots(crate_dir):
            crate = Crate(root_file, crate_dir / "src", f"{crate_dir.name} ({kind})")
            found += cycles(crate, top, edges)
    for line in found:
        print(line)
    if found:
        print("module-cycles: import cycles between modules (see above)", file=sys.stderr)
        return 1
    print(f"module-cycles: no import cycle between the modules of {len(dirs)} crate(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
