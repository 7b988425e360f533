#!/usr/bin/env python3
"""Checks that every Markdown document the sources and docs cite exists.

Usage: check_citations.py [--root DIR] | --self-test

Scans the repository's source, build and documentation files (.cpp .hpp .h .cu .cuh .md .cmake
.sh .py .txt) for citations of Markdown files and fails (exit 1, one line per problem) when

  * a cited path ends in ".md" but names no file, relative to the repository root or to the
    citing file's folder ("reference/EDGE_CASES.md", "kill-matrix-cpu.md" next to its citer);
  * a citation names a section that the cited file has no heading for. A section is cited
    by its heading text in double quotes right after the path, optionally after "," "(" or
    the word "section", several joined by "," or "and":
        reference/EDGE_CASES.md "Error bounds"
        reference/EDGE_CASES.md ("Oracle rules" and "Error bounds")
        DESIGN.md, section "Fused routing kernels"
  * a citation names a section by number ("DESIGN.md section 3"): numbers change when a
    document grows, headings are what readers search for.

Not citations: paths containing a shell or CMake variable ("$out/mutants.md"), globs ("*.md"),
absolute paths and URLs; this script itself (its examples are not citations). Files are listed with `git ls-files` when the root is a git checkout
(tracked and untracked, not ignored), otherwise by walking the tree without build*/ and .deps/.
"""

import os
import re
import subprocess
import sys
import tempfile

SCANNED = (".cpp", ".hpp", ".h", ".cu", ".cuh", ".md", ".cmake", ".sh", ".py", ".txt")
# A path-like token ending in ".md"; "$", "{", "}" and "*" are included so that variable paths
# and globs come out whole and can be skipped.
TOKEN = re.compile(r"[A-Za-z0-9_./${}*-]*[A-Za-z0-9_}*-]\.md(?![A-Za-z0-9_])")
SECTION_START = re.compile(r'^(?:\s*[,(]?\s*(?:section\s+)?)"(\w[^"]*)"')
SECTION_MORE = re.compile(r'^\s*(?:,|and|, and)\s*"(\w[^"]*)"')
SECTION_NUMBER = re.compile(r"^[\s,(]*sections?\s+[0-9]")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def list_files(root):
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-co", "--exclude-standard", "-z"],
                             check=True, capture_output=True).stdout.decode("utf-8", "replace")
        files = [f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for d, dirs, names in os.walk(root):
            rel = os.path.relpath(d, root)
            dirs[:] = [x for x in dirs if not (rel == "." and (x.startswith("build") or x in (".deps", ".git")))]
            files += [os.path.normpath(os.path.join(rel, n)) for n in names]
    own = os.path.realpath(__file__)
    return sorted(f for f in files if f.endswith(SCANNED) and os.path.isfile(os.path.join(root, f))
                  and os.path.realpath(os.path.join(root, f)) != own)


def headings(path, cache):
    if path not in cache:
        found = set()
        in_code = False
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("```"):
                    in_code = not in_code
                    continue
                m = None if in_code else HEADING.match(line)
                if m:
                    found.add(m.group(1))
        cache[path] = found
    return cache[path]


def cited_sections(rest):
    m = SECTION_START.match(rest)
    if not m:
        return []
    names = [m.group(1)]
    rest = rest[m.end():]
    while True:
        m = SECTION_MORE.match(rest)
        if not m:
            return names
        names.append(m.group(1))
        rest = rest[m.end():]


def check(root):
    problems = []
    cache = {}
    for rel in list_files(root):
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        for n, line in enumerate(lines, 1):
            for m in TOKEN.finditer(line):
                tok = m.group(0)
                if any(c in tok for c in "${}*") or tok.startswith("/"):
                    continue
                if m.start() > 0 and line[m.start() - 1] in "$}:/":
                    continue
                tok = tok[2:] if tok.startswith("./") else tok
                where = f"{rel}:{n}"
                target = None
                for cand in (os.path.join(root, tok), os.path.join(root, os.path.dirname(rel), tok)):
                    if os.path.isfile(cand):
                        target = cand
                        break
                if target is None:
                    problems.append(f"{where}: cites {tok}, which does not exist")
                    continue
                rest = line[m.end():]
                if SECTION_NUMBER.match(rest):
                    problems.append(f"{where}: cites a section of {tok} by number; cite its heading in quotes")
                for name in cited_sections(rest):
                    if name not in headings(target, cache):
                        problems.append(f'{where}: cites section "{name}" of {tok}, which has no such heading')
    return problems


def self_test():
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "docs"))
        files = {
            "GOOD.md": "# Title\n\n## Error bounds\n\n```\n# not a heading\n```\n",
            "docs/near.md": "# Near\n",
            "a.cpp": ('// GOOD.md "Error bounds" and GOOD.md ("Title" and "Error bounds")\n'
                      '// MISSING.md is cited\n'
                      '// GOOD.md, section "Nope"\n'
                      '// GOOD.md section 2\n'
                      '// GOOD.md "not a heading"\n'
                      '// ignored: $out/x.md ${dir}/y.md *.md https://example.com/z.md /abs/w.md\n'),
            "docs/b.md": "See near.md and GOOD.md, and [a link](GOOD.md#error-bounds), not sub/none.md.\n",
        }
        for name, text in files.items():
            with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                f.write(text)
        got = check(d)
        want = [
            "a.cpp:2: cites MISSING.md, which does not exist",
            'a.cpp:3: cites section "Nope" of GOOD.md, which has no such heading',
            "a.cpp:4: cites a section of GOOD.md by number; cite its heading in quotes",
            'a.cpp:5: cites section "not a heading" of GOOD.md, which has no such heading',
            "docs/b.md:1: cites sub/none.md, which does not exist",
        ]
        if got != want:
            print("self-test FAILED\nexpected:\n  " + "\n  ".join(want) + "\ngot:\n  " + "\n  ".join(got))
            return 1
        print(f"self-test passed ({len(want)} expected problems found, nothing else)")
        return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    root = "."
    if len(argv) == 3 and argv[1] == "--root":
        root = argv[2]
    elif len(argv) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    if not os.path.isdir(root):
        print(f"check_citations: --root {root}: not a folder", file=sys.stderr)
        return 2
    problems = check(root)
    for p in problems:
        print(p)
    n = len(list_files(root))
    if problems:
        print(f"{len(problems)} broken citation(s) in {n} files")
        return 1
    print(f"every cited document and section exists ({n} files scanned)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
