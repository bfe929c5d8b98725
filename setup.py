"""Packaging: the metadata lives in pyproject.toml.

With PATHWAY_COMPILE=1 the modules listed under [tool.oud-pathway] compiled-modules are compiled
with mypyc into the wheel, with the C extension pathway/population/_firstpass.c (the production
build; the Dockerfile's build stage does this). That
needs mypy and a C compiler in the build environment: `pip wheel --no-build-isolation .`.
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

from setuptools import Extension, setup

ext_modules: list[Any] = []
if os.environ.get("PATHWAY_COMPILE") == "1":
    from mypyc.build import mypycify

    with open("pyproject.toml", "rb") as f:
        modules = tomllib.load(f)["tool"]["oud-pathway"]["compiled-modules"]
    ext_modules = mypycify(modules, opt_level="3")
    # the population run's first pass (pathway.population.firstpass reads lines whole without it)
    ext_modules.append(
        Extension("pathway.population._firstpass", ["pathway/population/_firstpass.c"])
    )

setup(ext_modules=ext_modules)
