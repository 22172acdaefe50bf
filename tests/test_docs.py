"""The repository's documents stand alone: a user has only the repository.

Two rules, checked over the files git would ship (tracked, or new and not ignored):

* no project file points outside the repository, to developer notes a user never has
  (``../shared``, ``shared/notes``, ``DESIGN.md``, or the notes' own file names);
* the READMEs and reports under docs/, papers/, results/ and benchmarks/ (and the top README)
  state what is known, not how they were written: no "this session", "lent to the session",
  "search corpora" and the like.
"""
from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import List, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()

#: pointers to developer-only material outside the repository
OUTSIDE = re.compile(r"\.\./shared|shared/notes|shared/data|DESIGN\.md|"
                     r"\b(?:vpt_protocol|gatevpt_paper|slurm_local|lspt|vptm)\.md\b")
#: phrases that describe how a document was written instead of what is known
PROCESS = re.compile(r"\bthis session\b|\bthe session\b|\blent to the session\b|"
                     r"\bsearch corpora\b|\bcannot be fetched\b|\bproject brief\b|"
                     r"\bother agents\b", re.IGNORECASE)
DOC_DIRS = ("docs", "papers", "results", "benchmarks")
#: folders never shipped even when git is unavailable
SKIP_DIRS = {".git", ".venv", "__pycache__", "runs", "smoke", "node_modules", ".pytest_cache"}


@functools.lru_cache(maxsize=1)
def shipped_files() -> Tuple[Path, ...]:
    """Files git would commit: tracked ones plus new ones that are not ignored.  Without git
    (an unpacked archive), every file outside the build and run folders."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode()
        files = [ROOT / p for p in out.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in ROOT.rglob("*")
                 if p.is_file() and not SKIP_DIRS & set(p.relative_to(ROOT).parts)]
    return tuple(sorted(p for p in files if p.is_file()))


def _text(path: Path) -> str:
    """The file as text; '' for binary files (images, checkpoints, archives)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return ""
    return data.decode("utf-8", errors="replace")


def _hits(paths: Sequence[Path], pattern: re.Pattern) -> List[str]:
    out = []
    for p in paths:
        for n, line in enumerate(_text(p).splitlines(), 1):
            m = pattern.search(line)
            if m:
                out.append(f"{p.relative_to(ROOT)}:{n}: {m.group(0)!r} in {line.strip()[:120]}")
    return out


def test_shipped_files_are_found():
    files = {p.relative_to(ROOT).as_posix() for p in shipped_files()}
    # the scan must see the documents it guards, or it would pass by reading nothing
    assert {"README.md", "docs/data.md", "papers/lspt/README.md",
            "replicate/methods/lspt.py"} <= files


def test_no_file_points_outside_the_repository():
    hits = _hits([p for p in shipped_files() if p != THIS], OUTSIDE)
    assert not hits, ("files point to developer notes a user does not have; copy the facts "
                      "with their public sources into docs/ or the paper README and point "
                      "there:\n" + "\n".join(hits))


def test_documents_state_facts_not_how_they_were_written():
    docs = [p for p in shipped_files() if p.suffix == ".md" and
            (p.relative_to(ROOT).parts[0] in DOC_DIRS or p == ROOT / "README.md")]
    assert any(p.name == "README.md" and "papers" in p.parts for p in docs)
    hits = _hits(docs, PROCESS)
    assert not hits, ("documents describe how they were written; state the fact a reader can "
                      "check instead (which sources exist, what is unknown, the command that "
                      "makes a missing measurement):\n" + "\n".join(hits))


def test_patterns_catch_what_they_are_for():
    # the rules above would pass vacuously if the patterns matched nothing
    assert OUTSIDE.search("see ../shared/notes/lspt.md") and OUTSIDE.search("DESIGN.md")
    assert OUTSIDE.search("(notes: vpt_protocol.md §2.3)")
    assert not OUTSIDE.search("papers/lspt/README.md shared by all blocks")
    assert PROCESS.search("no GPU was lent to the session that wrote this")
    assert PROCESS.search("This session also tried")
    assert not PROCESS.search("a SLURM job session")
