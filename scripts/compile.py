"""Build the mypyc-compiled variant of the service into build/compiled/ (or DEST).

    python scripts/compile.py [DEST]

Copies pathway/ into DEST, links config/ and fhir_profiles/ beside it, and compiles the modules
listed under [tool.oud-pathway] compiled-modules in pyproject.toml to C extensions next to their
sources, and builds the hand-written C extension of the population run's first pass
(`FIRSTPASS`, pathway/population/_firstpass.c). `PYTHONPATH=DEST` then runs the compiled
service (the extension wins over the .py); the working tree itself is never touched, so editing a
.py never runs stale compiled code.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRSTPASS = "pathway.population._firstpass"
FIRSTPASS_SOURCE = ROOT / "pathway" / "population" / "_firstpass.c"


def build_firstpass(dest: Path, temp: Path) -> Path:
    """Compile the first pass's C extension into the package tree under `dest`; its path.
    (setuptools' build_ext: the interpreter's own compiler and flags.)"""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    ext = Extension(FIRSTPASS, [str(FIRSTPASS_SOURCE)], extra_compile_args=["-Werror", "-Wextra"])
    cmd = build_ext(Distribution({"name": "oud-pathway-firstpass", "ext_modules": [ext]}))
    cmd.build_lib = str(dest)
    cmd.build_temp = str(temp)
    cmd.ensure_finalized()
    cmd.run()
    built = dest / cmd.get_ext_filename(FIRSTPASS)
    if not built.is_file():
        raise RuntimeError(f"{FIRSTPASS} was not built")
    return built


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
    if len(built) != len(modules()):
        return 1
    build_firstpass(dest, dest / "build-temp")
    shutil.rmtree(dest / "build-temp")
    print(f"built {FIRSTPASS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
