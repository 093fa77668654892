#!/usr/bin/env python3
"""Report import cycles among the files under src/.

    scripts/import-cycles.py [SRC_DIR]      (default: src)

Every `.rs` file is a node. A file depends on another when it names it through a path:
`use crate::a::b`, `crate::a::b::c(...)` in code, `super::x`, `self::x` (a child module), or
`flotilla::...` (the binary), and in a module file `child::x` without a prefix. A path resolves to the deepest file it names: `crate::a::b::f`
is `src/a/b.rs` (or `src/a/b/mod.rs`) when that file exists, else `src/a.rs` / `src/a/mod.rs`.
`mod x;` declarations are containment, not dependencies, and a module's own `#[cfg(test)]
mod tests { ... }` counts like the rest of the file (its `super::` being the file itself). Strongly connected components of more
than one file are printed (Tarjan's algorithm), and the exit code is 1 when there is any.
"""

import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "src"

PATH_RE = re.compile(r"\b(crate|super|self|flotilla)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super|self|flotilla)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{", re.S)


def module_of(path):
    """Module path (list of names) of a file under SRC."""
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main") and len(rel) >= 1:
        rel = rel[:-1]
    return rel


def file_of(module, files):
    """The file holding module `module` (list of names), or None."""
    if not module:
        return files.get(("lib",))
    return files.get(tuple(module))


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    # String literals may hold `crate::` in messages; drop their contents.
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def group_items(text, start):
    """The comma-separated items of a `use x::{...}` group starting at `start` (the `{`)."""
    depth, i = 0, start
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                break
        i += 1
    inner = text[start + 1 : i]
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        items.append(cur.strip())
    return items


def main():
    files = {}
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                rel = os.path.relpath(p, SRC)[:-3].split(os.sep)
                if rel == ["lib"]:
                    files[("lib",)] = p
                elif rel == ["main"]:
                    files[("main",)] = p
                else:
                    files[tuple(module_of(p))] = p
    by_path = {v: k for k, v in files.items()}

    def resolve(here_file, root, rest):
        here = list(by_path[here_file]) if by_path[here_file] not in (("lib",), ("main",)) else []
        is_mod_file = os.path.basename(here_file) in ("mod.rs", "lib.rs", "main.rs")
        if root in ("crate", "flotilla"):
            base = []
        elif root == "self":
            base = here if is_mod_file else here  # `self::x` names a child of this module
        else:  # super
            base = here[:-1]
        names = [n for n in rest.split("::") if n]
        while names and names[0] == "super":
            base = base[:-1]
            names = names[1:]
        full = base + names
        for k in range(len(full), -1, -1):
            f = file_of(full[:k], files)
            if f is not None:
                # A name a module file re-exports from a child is that child's.
                if k < len(full) and full[k] in reexports.get(f, {}):
                    return reexports[f][full[k]]
                return f
        return None

    # `pub use child::{A, B}` / `pub use child::A` in a module file: A, B live in the child.
    reexports = {}
    for key, f in files.items():
        if os.path.basename(f) not in ("mod.rs", "lib.rs"):
            continue
        base = [] if key == ("lib",) else list(key)
        text = strip_comments(open(f, encoding="utf-8").read())
        for m in re.finditer(r"\bpub(?:\([a-z]+\))?\s+use\s+(?:self::)?([a-z_][a-z0-9_]*)((?:::[A-Za-z_][A-Za-z0-9_]*)*)(::\{[^;]*\}|)\s*;", text):
            child = tuple(base + [m.group(1)])
            cf = files.get(child)
            if cf is None:
                continue
            if m.group(3):
                names = [i.split(" as ")[-1].strip().split("::")[-1] for i in group_items(m.group(3), m.group(3).index("{"))]
            else:
                names = [(m.group(2).split("::")[-1]) if m.group(2) else m.group(1)]
            for n in names:
                if n and n != "self":
                    reexports.setdefault(f, {})[n] = cf

    graph = {p: set() for p in files.values()}
    for p in files.values():
        text = strip_comments(open(p, encoding="utf-8").read())
        # Inside an inline `mod x { ... }` (a file's tests), `super::` is the file itself.
        inline = re.search(r"\bmod\s+\w+\s*\{", text)
        if inline:
            tail = text[inline.end():].replace("super::super::", "\0").replace("super::", "self::")
            text = text[: inline.end()] + tail.replace("\0", "super::")
        refs = []
        for m in USE_GROUP_RE.finditer(text):
            brace = m.end() - 1
            for item in group_items(text, brace):
                item = item.split(" as ")[0].strip()
                if item in ("self", "*", ""):
                    refs.append((m.group(1), m.group(2)))
                else:
                    sub = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*", item)
                    if sub:
                        refs.append((m.group(1), m.group(2) + "::" + sub.group(0)))
        for m in PATH_RE.finditer(text):
            # `use a::b::{X, Y}`: the group's items were taken above; the prefix alone
            # names no item.
            if text.startswith("::{", m.end()):
                continue
            refs.append((m.group(1), m.group(2)))
        # In a module with children, `child::x` (no prefix) names the child's file.
        here = by_path[p]
        if os.path.basename(p) in ("mod.rs", "lib.rs", "main.rs"):
            base = [] if here in (("lib",), ("main",)) else list(here)
            for key, f in files.items():
                if len(key) == len(base) + 1 and list(key[:-1]) == base and key != ("lib",) and key != ("main",):
                    child = key[-1]
                    if re.search(r"(?<![:\w])" + child + r"::", text):
                        refs.append(("crate", "::" + "::".join(base + [child])))
        for root, rest in refs:
            if root == "flotilla" and by_path[p] != ("main",):
                continue
            target = resolve(p, root, rest)
            if target and target != p:
                graph[p].add(target)
        # A parent's `mod x;` is containment only: drop edges it makes by `self::x` re-exports?
        # No: a `pub use self::x::Y` is a real dependency and stays.

    # Tarjan's strongly connected components.
    index, low, on, stack, comps = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            strong(v)
    cycles = [sorted(c) for c in comps if len(c) > 1]
    if not cycles:
        print(f"no import cycle among {len(graph)} files under {SRC}/")
        return 0
    print(f"{len(cycles)} import cycle(s) among {len(graph)} files under {SRC}/:")
    for c in sorted(cycles):
        print("  " + " <-> ".join(c))
        for a in c:
            for b in sorted(graph[a]):
                if b in c:
                    print(f"      {a} -> {b}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
