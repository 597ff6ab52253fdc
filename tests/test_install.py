"""The install hands uv what pip is configured with (scripts/pip_to_uv.py, read by scripts/env.sh)."""

from __future__ import annotations

import subprocess
import sys

from tests.project import ROOT


def test_pips_listing_becomes_uvs_environment_in_pips_precedence() -> None:
    listing = "\n".join([
        "global.find-links='\\n/wheels/a\\n/wheels/b'",  # a multi-line value of pip.conf
        "install.find-links='/wheels/install'",
        ":env:.constraint='/env/constraints.txt'",
        "global.constraint='/global/constraints.txt'",
        "global.extra-index-url='file:///one file:///two'",
        "global.timeout='60'",  # nothing uv is handed
    ])  # fmt: skip
    done = subprocess.run([sys.executable, str(ROOT / "scripts/pip_to_uv.py")], input=listing, capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert sorted(done.stdout.splitlines()) == [
        "export UV_CONSTRAINT=/env/constraints.txt",  # the environment over [global]
        "export UV_EXTRA_INDEX_URL='file:///one file:///two'",
        "export UV_FIND_LINKS=/wheels/install",  # [install] over [global]
    ]
    multi = subprocess.run([sys.executable, str(ROOT / "scripts/pip_to_uv.py")],
                           input="global.find-links='\\n/wheels/a\\n/wheels/b'", capture_output=True, text=True,
                           check=True)  # fmt: skip
    assert multi.stdout == "export UV_FIND_LINKS=/wheels/a,/wheels/b\n"  # uv: commas
