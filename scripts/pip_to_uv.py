"""Print `export` lines that hand uv the indexes, links and constraints of pip's configuration.

uv reads no pip configuration; `scripts/env.sh` installs with it, and a machine may reach packages only
through what pip is configured with. Reads `pip config list` on standard input (values as Python literals,
the environment's `:env:` entries first among them).
"""

from __future__ import annotations

import ast
import shlex
import sys

UV = {"index-url": "UV_INDEX_URL", "extra-index-url": "UV_EXTRA_INDEX_URL", "find-links": "UV_FIND_LINKS",
      "constraint": "UV_CONSTRAINT"}  # fmt: skip
PRECEDENCE = {":env:": 0, "install": 1, "global": 2}  # pip: the environment over [install] over [global]


def main() -> None:
    found: dict[str, tuple[int, str]] = {}
    for line in sys.stdin:
        key, _, literal = line.rstrip("\n").partition("=")
        section, _, name = key.rpartition(".")
        if name in UV and section in PRECEDENCE:
            value = " ".join(str(ast.literal_eval(literal)).split())  # a multi-line value: one per line
            found[name] = min(found.get(name, (99, "")), (PRECEDENCE[section], value))
    for name, (_, value) in found.items():
        print(f"export {UV[name]}={shlex.quote(value.replace(' ', ',') if name == 'find-links' else value)}")


if __name__ == "__main__":
    main()
