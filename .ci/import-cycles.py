#!/usr/bin/env python3
"""No import cycles: layers only import downward.

For each crate (src/, proto/src/), builds the graph of its top-level modules
from the `crate::module` paths in non-comment, non-test code, and the graph of
the files inside each folder module (`crate::folder::file` and `super::file`);
fails if any two point at each other. An `impl Core` block in a file of the
engine folder uses the `Core` type from its `mod.rs`; that is Rust's way of
splitting one type's methods over files, not a layer reaching up, and is not
counted.
"""
import collections
import os
import re
import sys


def code_of(path):
    text = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
    return "\n".join(l for l in text.split("\n") if not l.strip().startswith("//"))


def edges_between_modules(root):
    modules = {f[:-3] if f.endswith(".rs") else f for f in os.listdir(root)}
    edges = collections.defaultdict(set)
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".rs"):
                continue
            top = os.path.relpath(os.path.join(dirpath, name), root).split("/")[0]
            top = top[:-3] if top.endswith(".rs") else top
            if top in ("lib", "main", "bin"):
                continue
            for used in re.findall(r"crate::(\w+)", code_of(os.path.join(dirpath, name))):
                if used != top and used in modules:
                    edges[top].add(used)
    return edges


def edges_between_files(folder):
    files = {f[:-3] for f in os.listdir(folder) if f.endswith(".rs") and f != "mod.rs"}
    prefix = os.path.basename(folder)
    edges = collections.defaultdict(set)
    for name in files:
        code = code_of(os.path.join(folder, name + ".rs"))
        for a, b in re.findall(r"crate::" + prefix + r"::(\w+)|super::(\w+)", code):
            used = a or b
            if used != name and used in files:
                edges[name].add(used)
    return edges


def cycles(edges):
    return sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, ())})


failed = False
for root in ("src", "proto/src"):
    found = cycles(edges_between_modules(root))
    for folder in sorted(os.listdir(root)):
        path = os.path.join(root, folder)
        if os.path.isdir(path):
            found += [(f"{folder}/{a}", f"{folder}/{b}") for a, b in cycles(edges_between_files(path))]
    for a, b in found:
        print(f"import cycle in {root}: {a} <-> {b}")
        failed = True
print("import cycles: none" if not failed else "import cycles found")
sys.exit(1 if failed else 0)
