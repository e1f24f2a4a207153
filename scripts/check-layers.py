#!/usr/bin/env python3
"""Check that no module of src/ imports from a layer above its own (docs/architecture.md).

    scripts/check-layers.py              check src/ (exit 1 and list each violation)
    scripts/check-layers.py --self-test  check the parser on inline snippets

What counts as an import, in code (comments and string literals are blanked out first):
  - `use crate::…` / `use graft::…` / `use super::…`, grouped forms
    (`use crate::{a::b, c::{d, e}};`) spanning lines, each leaf path counted;
  - inline paths in code: `crate::a::f()`, `graft::a::T`, `super::super::a::T`;
  - at a crate root (lib.rs, main.rs) bare paths naming one of its own modules (`use cli::X`).
In the library `crate::` is the library; in the binary (main.rs, cli/) `crate::` is the binary
and `graft::` the library. Python 3 standard library only.
"""

import os
import re
import sys

# The layers, lowest first. A module may import from its own layer and the ones below.
# Names are the top-level entries of src/: a directory (`oci` = src/oci/) or a file without
# `.rs`. Add new modules here: a module missing from the map is an error.
LAYER_1 = [
    "oci",
    "reference",
    "timestamp",
    "error",
    "progress",
    "fsutil",
    "tarheader",
]
LAYER_2 = ["store", "layer"]
LAYER_3 = ["copy", "copy_tests", "image", "sign", "library", "builder"]
# ops/ holds every use case, ops/factory/ (the image factory, issue 15) included.
LAYER_4 = ["ops"]
LAYER_5 = ["cli", "main"]
LAYERS = {}
for _n, _names in enumerate([LAYER_1, LAYER_2, LAYER_3, LAYER_4, LAYER_5], start=1):
    for _name in _names:
        LAYERS[_name] = _n

# Modules still outside the directory they belong in, as {"name": "destination"}: checked as
# members of the destination's layer, and each reported until it moves (then delete its entry).
# Empty since attachments, mirror and refresh moved into ops/.
MOVING = {}
for _name, _dest in MOVING.items():
    LAYERS[_name] = LAYERS[_dest]

# Crate roots: they declare the modules and re-export, and are not checked themselves.
LIBRARY_ROOT = "lib.rs"
BINARY_ROOT = "main.rs"
# Top-level modules of the binary crate (declared in main.rs); everything else is the library.
BINARY_MODULES = {"cli", "main"}


# ---------------------------------------------------------------------------------------------
# Lexing: blank comments and literals, keep offsets and newlines.


def strip_code(text):
    """`text` with comments and the contents of string and char literals replaced by spaces
    (newlines kept, so offsets and line numbers still match the file)."""
    out = list(text)
    n = len(text)
    i = 0

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rb" and re.match(r'(?:br|r)#*"', text[i:i + 260]) and not _ident_before(text, i):
            m = re.match(r'(?:br|r)(#*)"', text[i:])
            hashes = m.group(1)
            start = i + m.end()
            end = text.find('"' + hashes, start)
            end = n if end < 0 else end + 1 + len(hashes)
            blank(start, end - 1 - len(hashes))
            i = end
        elif c == '"' or (c == "b" and nxt == '"' and not _ident_before(text, i)):
            j = i + (2 if c == "b" else 1)
            start = j
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(start, min(j, n))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}', '"'), else a lifetime or label ('a).
            m = re.match(r"'(?:\\u\{[0-9a-fA-F]+\}|\\.|[^\\'\n])'", text[i:])
            if m:
                blank(i + 1, i + m.end() - 1)
                i += m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def _ident_before(text, i):
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")


# ---------------------------------------------------------------------------------------------
# Finding imports.

USE_RE = re.compile(r"\buse\s+([^;]*);", re.S)
# An inline path: crate::a, graft::a, super::super::a (not `$crate`, not `foo::crate`).
INLINE_RE = re.compile(
    r"(?<![\w$:])((?:crate|graft)|(?:super\s*::\s*)*super)\s*::\s*([A-Za-z_]\w*)"
)


def expand_use_tree(tree, offset):
    """Leaf paths of a use tree (`a::{b, c::{d, e}}`) as (list of segments, offset of the
    tree's first character). Renames (`as x`) are dropped."""
    pos = 0
    tokens = []
    for m in re.finditer(r"::|[{},*]|[A-Za-z_]\w*|\S", tree):
        tokens.append((m.group(0), offset + m.start()))
    out = []

    def parse(prefix, start_off):
        nonlocal pos
        segs = list(prefix)
        first = start_off
        while pos < len(tokens):
            tok, off = tokens[pos]
            if first is None:
                first = off
            if tok == "{":
                pos += 1
                while pos < len(tokens) and tokens[pos][0] != "}":
                    if tokens[pos][0] == ",":
                        pos += 1
                        continue
                    parse(segs, None)
                pos += 1  # the closing brace
                return
            if tok in (",", "}"):
                break
            if tok == "as":
                pos += 2  # `as name`
                continue
            if tok != "::":
                segs.append(tok)
            pos += 1
        if segs:
            out.append((segs, first))

    while pos < len(tokens):
        if tokens[pos][0] == ",":
            pos += 1
            continue
        parse([], None)
    return out


def module_path(rel):
    """Module path of a file relative to src/: `image/append.rs` → ["image", "append"],
    `store/mod.rs` → ["store"], `lib.rs` → []."""
    parts = rel[:-3].split("/")
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        return []
    return parts


def in_binary(rel):
    return rel == BINARY_ROOT or rel.startswith("cli/")


def resolve(rel, segs, modules):
    """The (crate, top-level module) a path points at, or None when it stays inside the
    file's own module, names no module, or leaves the project (std, other crates).
    `crate` is "lib" or "bin"."""
    binary = in_binary(rel)
    own = "bin" if binary else "lib"
    head = segs[0]
    if head == "graft":
        rest, crate = segs[1:], "lib"
    elif head == "crate":
        rest, crate = segs[1:], own
    elif head == "super":
        here = module_path(rel)
        n = 0
        while n < len(segs) and segs[n] == "super":
            n += 1
        if n > len(here):
            return None
        rest, crate = here[: len(here) - n] + segs[n:], own
    elif head == "self":
        return None
    elif rel in (LIBRARY_ROOT, BINARY_ROOT):
        rest, crate = segs, own
    else:
        return None
    if not rest:
        return None
    name = rest[0]
    if crate == "bin" and name not in BINARY_MODULES:
        return None
    if crate == "lib" and name in BINARY_MODULES:
        return None
    if name not in modules[crate]:
        return None
    return crate, name


def imports(rel, text, modules):
    """(line, path text, target module) for every import in a file."""
    code = strip_code(text)
    found = {}
    for m in USE_RE.finditer(code):
        tree = m.group(1)
        for segs, off in expand_use_tree(tree, m.start(1)):
            segs = [s for s in segs if s != "*"]
            if not segs:
                continue
            target = resolve(rel, segs, modules)
            if target:
                found[off] = ("::".join(segs), target)
    uses = [(u.start(), u.end()) for u in USE_RE.finditer(code)]
    for m in INLINE_RE.finditer(code):
        if any(a <= m.start() < b for a, b in uses):
            continue
        head = re.sub(r"\s+", "", m.group(1))
        segs = head.split("::") + [m.group(2)]
        target = resolve(rel, segs, modules)
        if target:
            found[m.start()] = ("::".join(segs), target)
    out = []
    for off, (path, target) in sorted(found.items()):
        line = code.count("\n", 0, off) + 1
        out.append((line, path, target))
    return out


def top_module(rel):
    first = rel.split("/")[0]
    return first[:-3] if first.endswith(".rs") else first


def top_modules(src):
    lib = set()
    for e in os.listdir(src):
        if e.endswith(".rs"):
            lib.add(e[:-3])
        elif os.path.isdir(os.path.join(src, e)):
            lib.add(e)
    lib -= {"lib", "main"} | BINARY_MODULES
    return {"lib": lib, "bin": set(BINARY_MODULES)}


def check(src):
    """Problems found in the tree at `src`, as printable lines."""
    modules = top_modules(src)
    problems = []
    files = []
    for root, _dirs, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                files.append(os.path.relpath(os.path.join(root, name), src).replace(os.sep, "/"))
    unassigned = set()
    for mod in sorted(MOVING):
        if _exists(src, mod):
            problems.append(
                f"src/{mod}: module {mod} belongs in {MOVING[mod]}/ "
                f"(layer {LAYERS[mod]}); checked as part of it until it moves"
            )
    for rel in sorted(files):
        if rel in (LIBRARY_ROOT,):
            continue
        mod = top_module(rel)
        if mod not in LAYERS:
            if mod not in unassigned:
                unassigned.add(mod)
                problems.append(
                    f"src/{rel}: unassigned module {mod}: add it to a layer in "
                    f"scripts/check-layers.py"
                )
            continue
        with open(os.path.join(src, rel), encoding="utf-8") as f:
            text = f.read()
        layer = LAYERS[mod]
        for line, path, (_crate, target) in imports(rel, text, modules):
            if target == mod:
                continue
            if target not in LAYERS:
                continue  # reported as unassigned, once, when its own files are read
            if LAYERS[target] > layer:
                problems.append(
                    f"src/{rel}:{line}: module {mod} (layer {layer}) imports "
                    f"{target} (layer {LAYERS[target]}) via {path}"
                )
    for mod in sorted(modules["lib"] - set(LAYERS) - unassigned):
        problems.append(f"src/{mod}: unassigned module {mod}")
    return problems


def _exists(src, name):
    return os.path.exists(os.path.join(src, name + ".rs")) or os.path.isdir(
        os.path.join(src, name)
    )


# ---------------------------------------------------------------------------------------------
# Self-test.


def self_test():
    modules = {
        "lib": {"oci", "error", "store", "image", "sign", "library", "ops", "copy"},
        "bin": set(BINARY_MODULES),
    }

    def targets(rel, text):
        # Imports of other top-level modules (what check() compares layers of).
        return [
            (line, path, t[1])
            for line, path, t in imports(rel, text, modules)
            if t[1] != top_module(rel)
        ]

    cases = [
        # Grouped use spanning lines, nested braces, renames, globs.
        (
            "error.rs",
            "use crate::{\n    oci::Digest,\n    sign::{self, keys::Key as K},\n    library::*,\n};\n",
            [(2, "crate::oci::Digest", "oci"), (3, "crate::sign::self", "sign"),
             (3, "crate::sign::keys::Key", "sign"), (4, "crate::library", "library")],
        ),
        # Comments and strings are not code.
        (
            "error.rs",
            '// use crate::sign::X;\n/// see crate::sign::Y\n//! crate::ops\n'
            '/* crate::ops /* nested */ crate::ops */\n'
            'let s = "crate::sign::Z"; let r = r#"use crate::ops::x;"#;\n'
            "let c = '\"'; fn f<'a>(x: &'a str) {}\n",
            [],
        ),
        # Inline paths; std and other crates are ignored; `$crate` is not ours.
        (
            "store/memo.rs",
            "use std::sync::Arc;\nuse bytes::Bytes;\nfn f() { crate::image::append::g(); }\n"
            "macro_rules! m { () => { $crate::ops::x() } }\n",
            [(3, "crate::image", "image")],
        ),
        # super:: resolves from the file's module; inside its own module it is not an import.
        (
            "image/append.rs",
            "use super::config::edit;\nuse super::super::sign::Key;\nmod tests { use super::*; }\n",
            [(2, "super::super::sign::Key", "sign")],
        ),
        # The binary: crate:: is the binary, graft:: the library, bare names at its root.
        (
            "cli/copy.rs",
            "use crate::cli::Common;\nuse graft::ops::mirror;\nlet x = graft::copy::copy_image;\n",
            [(2, "graft::ops::mirror", "ops"), (3, "graft::copy", "copy")],
        ),
        (
            "main.rs",
            "mod cli;\nuse cli::{Cli, Command};\nuse graft::error::Error;\n",
            [(2, "cli::Cli", "cli"), (2, "cli::Command", "cli"), (3, "graft::error::Error", "error")],
        ),
        # A library file's bare `use verify::x` names its own child module or a crate.
        ("store/mod.rs", "mod verify;\npub use verify::verify_stream;\n", []),
    ]
    failed = 0
    # A whole tree: a violation, an unassigned module, and a clean file.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        files = {
            "lib.rs": "pub mod oci;\npub mod store;\npub mod gadget;\n",
            "oci/mod.rs": "use crate::store::Source; // upward\n",
            "store/mod.rs": "use crate::oci::Digest;\n",
            "gadget.rs": "use crate::oci::Digest;\n",
        }
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            with open(os.path.join(tmp, rel), "w", encoding="utf-8") as f:
                f.write(text)
        got = check(tmp)
        want = [
            "src/gadget.rs: unassigned module gadget: add it to a layer in "
            "scripts/check-layers.py",
            "src/oci/mod.rs:1: module oci (layer 1) imports store (layer 2) via "
            "crate::store::Source",
        ]
        if got != want:
            failed += 1
            print(f"self-test FAILED for a tree:\n  want {want}\n  got  {got}")
    for rel, text, want in cases:
        got = targets(rel, text)
        if got != want:
            failed += 1
            print(f"self-test FAILED for {rel}:\n{text}\n  want {want}\n  got  {got}")
    if failed:
        return 1
    print(f"self-test: {len(cases) + 1} cases passed")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) > 1:
        print(__doc__)
        return 2
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    problems = check(os.path.normpath(src))
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} layer problem(s); see docs/architecture.md")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
