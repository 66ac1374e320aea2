"""Running one arm of a bench in a fresh child process, so that its peak RSS and its caches are its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def arm_in_child(script: str, spec: dict, env: dict) -> dict:
    """Run ``script --child SPEC`` and return the JSON of its ``RESULT`` line; exit with its stderr on failure.

    Example:
        >>> arm_in_child(__file__, {"arm": "article"}, {})  # doctest: +SKIP
    """
    out = subprocess.run([sys.executable, script, "--child", json.dumps(spec)], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        sys.exit(f"arm {spec['arm']} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])
