"""Build the mypyc-compiled variant of the service into build/compiled/ (or DEST).

    python scripts/compile.py [DEST]

Copies pathway/ into DEST, links config/ and fhir_profiles/ beside it, and compiles the modules
listed under [tool.oud-pathway] compiled-modules in pyproject.toml to C extensions next to their
sources. `PYTHONPATH=DEST` then runs the compiled service (the extension wins over the .py);
the working tree itself is never touched, so editing a .py never runs stale compiled code.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def modules() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        listed: list[str] = tomllib.load(f)["tool"]["oud-pathway"]["compiled-modules"]
    return listed


def main() -> int:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "compiled"
    dest = dest.resolve()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(
        ROOT / "pathway", dest / "pathway", ignore=shutil.ignore_patterns("__pycache__", "*.so")
    )
    for name in ("config", "fhir_profiles"):
        (dest / name).symlink_to(ROOT / name, target_is_directory=True)
    mypyc = Path(sys.executable).with_name("mypyc")
    result = subprocess.run(
        # the checkout's mypy settings; mypyc takes mypy options among the paths
        [str(mypyc), f"--config-file={ROOT / 'pyproject.toml'}", *modules()],
        cwd=dest,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-4000:], sep="\n", file=sys.stderr)
        print(f"mypyc failed (exit {result.returncode})", file=sys.stderr)
        return 1
    built = sorted(p.relative_to(dest) for p in (dest / "pathway").rglob("*.so"))
    print(f"compiled {len(built)} modules into {dest}")
    return 0 if len(built) == len(modules()) else 1


if __name__ == "__main__":
    sys.exit(main())
