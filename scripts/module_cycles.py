#!/usr/bin/env python3
"""Lists import cycles between the modules of a crate.

A module is a top-level file or folder under `src/` (`connection/inbound.rs`
belongs to `connection`). Module A uses module B when A's files name
`crate::B` anywhere (in `use` lines or in paths), or a name that `lib.rs`
re-exports from B (`pub use b::Thing;` makes `crate::Thing` a use of B). A cycle is two or more modules that reach each other through
such uses. Exits 1 and prints each cycle when there is one.

    python3 scripts/module_cycles.py crates/broker
"""

import re
import sys
from pathlib import Path

CRATE_PATH = re.compile(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)")
# `use crate::{a, b::C}` names several modules at once.
CRATE_GROUP = re.compile(r"\bcrate::\{([^}]*)\}")


def module_of(src: Path, file: Path) -> str:
    rel = file.relative_to(src)
    return rel.parts[0].removesuffix(".rs")


# `pub use module::{A, B};` or `pub use module::A;` in lib.rs.
REEXPORT = re.compile(r"pub use ([a-z_][a-z0-9_]*)::(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def reexports(src: Path) -> dict[str, str]:
    """Names lib.rs re-exports, each with the module it comes from."""
    lib = src / "lib.rs"
    found: dict[str, str] = {}
    if lib.exists():
        for module, group, single in REEXPORT.findall(lib.read_text()):
            for name in (group.split(",") if group else [single]):
                if name.strip():
                    found[name.strip()] = module
    return found


def uses(src: Path) -> dict[str, set[str]]:
    modules = {module_of(src, f) for f in src.rglob("*.rs")} - {"lib", "main"}
    exported = reexports(src)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for file in src.rglob("*.rs"):
        me = module_of(src, file)
        if me in ("lib", "main"):
            continue
        text = file.read_text()
        # Comments (doc comments mention modules without using them).
        text = re.sub(r"//[^\n]*", "", text)
        names = set(CRATE_PATH.findall(text))
        for group in CRATE_GROUP.findall(text):
            names |= {part.strip().split("::")[0] for part in group.split(",")}
        names = {exported.get(n, n) for n in names}
        graph[me] |= {n for n in names if n in modules and n != me}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src = Path(sys.argv[1]) / "src"
    graph = uses(src)
    found = cycles(graph)
    for component in found:
        edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component]
        print(f"cycle: {', '.join(component)}  ({'; '.join(edges)})")
    if not found:
        print(f"{src}: {len(graph)} modules, no cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
