#!/usr/bin/env python3
"""Modules that import each other in a circle, per crate of the workspace.

Reads every `src/**/*.rs` of each crate given (default: every crate under the current directory), maps
each file to its module path (`src/store/mod.rs` -> `store`, `src/commit/rows.rs` ->
`commit::rows`), collects the `crate::...` and `super::...` paths each file names (in `use`
lines and in code; comments and `#[cfg(test)]` modules excluded) and resolves each to the deepest module file that
exists. A circle is a strongly connected set of two or more files; a module importing its own
submodule (`mod.rs` naming its children) is not an import. Prints each circle and a total;
exits 1 when there is any, so that CI can keep the count at zero.

Usage (from the repository root): scripts/import-cycles.py [CRATE_DIR...]   (e.g. collector sim)
"""

import pathlib
import re
import sys

ROOT = pathlib.Path.cwd()
PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super)::\{([^}]*)\}")


def module_of(src: pathlib.Path, f: pathlib.Path) -> tuple:
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text: str) -> str:
    # Unit tests (`#[cfg(test)] mod tests`, at the end of a file) may import anything.
    text = text.split("#[cfg(test)]", 1)[0]
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def crate_cycles(crate: pathlib.Path) -> list:
    src = crate / "src"
    files = [f for f in src.rglob("*.rs")]
    mods = {module_of(src, f): f for f in files}
    edges = {m: set() for m in mods}
    for m, f in mods.items():
        text = strip_comments(f.read_text(encoding="utf-8"))
        # `super` is relative to the module a file defines (`mod.rs` is its folder's module).
        parent = m[:-1]
        refs = []
        for kind, names in GROUP.findall(text):
            for name in names.split(","):
                name = name.strip().split(" ")[0]
                if name and name != "self":
                    refs.append((kind, ["", *name.split("::")]))
        for kind, rest in PATH.findall(text):
            refs.append((kind, rest.split("::")))
        for kind, segs in refs:
            segs = [s for s in segs if s]
            base = () if kind == "crate" else parent
            target = None
            for n in range(len(segs), 0, -1):
                cand = base + tuple(segs[:n])
                if cand in mods:
                    target = cand
                    break
            if target is None or target == m:
                continue
            # A parent naming its own child is the module tree, not an import.
            if target[: len(m)] == m and m != ():
                continue
            if m == ():
                continue
            edges[m].add(target)
    # Tarjan's strongly connected components.
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
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
            if len(comp) > 1:
                out.append(sorted("::".join(c) for c in comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def main() -> int:
    if len(sys.argv) > 1:
        crates = [ROOT / a for a in sys.argv[1:]]
    else:
        crates = sorted(p.parent for p in ROOT.glob("*/Cargo.toml") if (p.parent / "src").is_dir())
    total = 0
    for crate in crates:
        for comp in crate_cycles(crate):
            total += len(comp)
            print(f"{crate.name}: {len(comp)} modules in one circle: {', '.join(comp)}")
    print(f"modules in a circle: {total}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
