#!/usr/bin/env python3
"""Refuses early readers in the pipelines of the repository's bash scripts.

Every script runs under `set -o pipefail`, where `writer | head`, `writer | grep -q` and
`writer | awk '{...; exit}'` fail with 141 whenever the reader stops before the writer has written
everything (the writer dies of SIGPIPE). scripts/lib/pipes.sh says why and has the readers to use
instead (matches, first_lines). The bodies of here-documents are skipped: they are YAML, or shell
that runs in a pod's /bin/sh without pipefail.

    python3 scripts/check-pipes.py      # exit 0, or 1 with FILE:LINE: the line, for each
"""
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = sorted(
    [*REPO.glob("scripts/**/*.sh"), *REPO.glob("e2e/**/*.sh"), REPO / ".ci" / "run"]
)
HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
EARLY_READER = re.compile(
    r"\|&?\s*(?:head\b"
    r"|grep\b[^|]*\s(?:-[A-Za-z]*[qm][A-Za-z0-9]*|--quiet|--silent|--max-count)\b"
    r"|awk\b[^|]*\bexit\b)"
)


def early_readers(path):
    terminator = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if terminator is not None:
            if line.strip() == terminator:
                terminator = None
            continue
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        if EARLY_READER.search(code.replace("||", "  ")):
            yield number, line.strip()
        heredoc = HEREDOC.search(code.replace("<<<", "   "))
        if heredoc:
            terminator = heredoc.group(2)


def main():
    found = [
        f"{path.relative_to(REPO)}:{number}: {line}"
        for path in SCRIPTS
        if path.is_file()
        for number, line in early_readers(path)
    ]
    for f in found:
        print(f)
    if found:
        print(
            f"check-pipes: {len(found)} early reader(s) in a pipeline; use matches or first_lines"
            " (scripts/lib/pipes.sh)",
            file=sys.stderr,
        )
        return 1
    print(f"check-pipes: {len(SCRIPTS)} scripts, no early reader in a pipeline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
