#!/usr/bin/env python3
"""Check our AR engine against a golden set: ``python scripts/check_golden.py ../shared/golden/tiny-v2w``.

Prints the max abs/rel difference of every output and exits 1 if any exceeds the set's tolerance.
A folder holding several sets (``../shared/golden``) checks each of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts.golden_ar, the harness

from scripts.golden_ar import check_golden_set  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    root = Path(argv[0])
    sets = [root] if (root / "config.json").exists() else sorted(p.parent for p in root.glob("*/config.json"))
    if not sets:
        print(f"no golden set (config.json) under {root}", file=sys.stderr)
        return 2
    failed = False
    for folder in sets:
        print(f"== {folder}")
        for d in check_golden_set(folder):
            failed |= not d.ok
            print(f"  {d.name:<24} max_abs={d.max_abs:.3e} max_rel={d.max_rel:.3e} {'ok' if d.ok else 'FAIL'}")
    print("FAILED" if failed else "all within tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
