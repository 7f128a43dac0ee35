#!/usr/bin/env python3
"""Fails if any crate has an import circle between its source files.

A file imports another when it names it with a `crate::a::b` or `super::x` path (in a `use`,
a re-export or inline). Test modules are skipped: their helpers may name what they test.
"""
import os
import re
import sys

CRATES = ["engine", "filter", "control", "integration", "bench"]


def module_files(src):
    """Module path (tuple) -> file, for every .rs file under src."""
    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[-1] in ("lib", "main", "mod"):
                rel = rel[:-1]
            if rel and rel[0] == "bin":
                continue
            files[tuple(rel)] = path
    return files


def code_without_tests(text):
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def imports(mod, text, files):
    found = set()
    for line in code_without_tests(text).splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        for m in re.finditer(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)", stripped):
            parts = m.group(2).split("::")[1:]
            base = [] if m.group(1) == "crate" else list(mod[:-1])
            path = tuple(base + parts)
            # The longest prefix that is a file is the file imported.
            for n in range(len(path), 0, -1):
                if path[:n] in files and path[:n] != mod:
                    found.add(path[:n])
                    break
    return found


def cycles(graph):
    out, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                out.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return out


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    bad = 0
    for crate in CRATES:
        src = os.path.join(root, crate, "src")
        files = module_files(src)
        graph = {}
        for mod, path in files.items():
            with open(path, encoding="utf-8") as f:
                graph[mod] = imports(mod, f.read(), files)
        for c in cycles(graph):
            bad += 1
            print(f"{crate}: import circle: " + " -> ".join("::".join(m) or "lib" for m in c))
    if bad:
        sys.exit(1)
    print("no import circles between files")


main()
