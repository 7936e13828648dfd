#!/usr/bin/env python3
"""The shape checks ARCHITECTURE.md promises: no import circles between the modules of a
crate, and no Rust file over 600 lines unless its opening comment says why (a line
starting `//! Long file:` or `// Long file:` within its first 20 lines).
usage: check-shape.py [DIR...]   (run from the workspace root; default: every crate's src/, tests/, benches/)
An edge M -> N exists when M's file names `crate::N...` or `super::...` resolving to N, outside
`mod x;` / `pub use` re-export lines and outside `#[cfg(test)] mod tests` blocks. A cycle
among distinct modules (a parent's mod.rs counts as a module) is printed; exit 1 if any."""
import os, re, sys

def modname(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ('mod', 'lib', 'main'):
        rel = rel[:-1]
    return tuple(rel)

def expand_groups(text):
    """`use crate::{a::X, b::{c, d}}` -> one `crate::a::X` path per leaf, so groups count."""
    out, i = [], 0
    pat = re.compile(r'\b(crate|super|self)((?:::\w+)*)::\{')
    while True:
        m = pat.search(text, i)
        if not m:
            out.append(text[i:])
            return ''.join(out)
        j, depth = m.end(), 1
        while depth and j < len(text):
            depth += {'{': 1, '}': -1}.get(text[j], 0)
            j += 1
        inner = expand_groups(text[m.end():j - 1])
        prefix = m.group(1) + m.group(2)
        leaves = [s.strip() for s in re.split(r',', inner) if s.strip()]
        out.append(text[i:m.start()] + ' '.join(
            prefix + '::' + l for l in leaves if l not in ('self',)) + ' ')
        i = j

def strip_tests(text):
    m = re.search(r'#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{', text)
    return text[:m.start()] if m else text

MAX_LINES = 600

def long_files(dirs):
    bad = 0
    for d in dirs:
        for root, _, files in os.walk(d):
            for f in sorted(files):
                if not f.endswith('.rs'):
                    continue
                p = os.path.join(root, f)
                lines = open(p).read().split('\n')
                if len(lines) > MAX_LINES and not any(
                        re.match(r'\s*//!? Long file:', l) for l in lines[:20]):
                    print(f"{p}: {len(lines)} lines, over {MAX_LINES} without a `Long file:` reason")
                    bad += 1
    return bad

def default_dirs():
    root = '.'
    out = []
    for c in sorted(os.listdir(root)):
        if os.path.exists(os.path.join(root, c, 'Cargo.toml')):
            for sub in ('src', 'tests', 'benches', 'e2e'):
                p = os.path.join(root, c, sub)
                if os.path.isdir(p):
                    out.append(os.path.relpath(p))
    return out

def main():
    dirs = sys.argv[1:] or default_dirs()
    bad = long_files(dirs)
    for src in [d for d in dirs if d.endswith('src')]:
        mods = {}
        for root, _, files in os.walk(src):
            for f in files:
                if f.endswith('.rs'):
                    p = os.path.join(root, f)
                    mods[modname(src, p)] = p
        edges = {m: set() for m in mods}
        for m, p in mods.items():
            is_dir_mod = os.path.basename(p) in ('mod.rs', 'lib.rs', 'main.rs')
            text = strip_tests(open(p).read())
            lines = [l for l in text.split('\n') if not re.match(r'\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+;', l)
                     and not re.match(r'\s*pub(\([a-z]+\))?\s+use\s', l) and not l.strip().startswith('//')]
            body = expand_groups('\n'.join(lines))
            refs = [(mm.group(1), mm.group(2).split('::')[1:])
                    for mm in re.finditer(r'\b(crate|super)((?:::\w+)+)', body)]
            if is_dir_mod:
                # A parent naming its own child module (`child::f()`, `use child::X`).
                for mm in re.finditer(r'(?<![\w:])(\w+)::\w', body):
                    if m + (mm.group(1),) in mods:
                        refs.append(('self', [mm.group(1)]))
            for kind, path in refs:
                if kind == 'crate':
                    base = ()
                elif kind == 'self':
                    base = m
                else:
                    base = m if is_dir_mod else m[:-1]
                    base = base[:-1] if True else base
                    # super from file module m: parent of m (for a.rs: crate root; for a/mod.rs: crate root too)
                    base = m[:-1]
                    while path and path[0] == 'super':
                        base = base[:-1]; path = path[1:]
                target = base
                for seg in path:
                    if base + (seg,) in mods or any(k[:len(base)+1] == base + (seg,) for k in mods):
                        base = base + (seg,); target = base
                    else:
                        break
                if target != m and target in mods and target != ():
                    # a module naming its own descendant through crate:: is not a circle by itself
                    edges[m].add(target)
        # cycles via DFS
        seen, stack, onstack, found = set(), [], set(), set()
        def dfs(u):
            seen.add(u); stack.append(u); onstack.add(u)
            for v in edges[u]:
                if v in onstack:
                    cyc = tuple(stack[stack.index(v):])
                    key = frozenset(cyc)
                    if key not in found:
                        found.add(key)
                        print(f"{src}: circle: " + ' -> '.join('::'.join(x) or 'crate' for x in cyc + (v,)))
                elif v not in seen:
                    dfs(v)
            stack.pop(); onstack.discard(u)
        sys.setrecursionlimit(10000)
        for u in mods:
            if u not in seen:
                dfs(u)
        bad += len(found)
    sys.exit(1 if bad else 0)
main()
