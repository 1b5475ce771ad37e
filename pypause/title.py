"""The process title: `ps` shows `pypause …`, not `python3 /usr/bin/pypause …`.

setproctitle does the work, but `import setproctitle` runs its package
__init__, which imports `logging` (and with it traceback, tokenize, threading,
re...): ~8 ms and ~1.4 MB on every start, for a fallback we never use. Its
compiled module `setproctitle._setproctitle` does not need the package, so it
is loaded directly from the installed package's directory.

The loading machinery comes from the import system's own modules, which every
interpreter has loaded before any code runs; importlib.machinery only
re-exports them, and importing it runs importlib/__init__ (and `warnings`):
~0.7 ms.
"""

import os
from _frozen_importlib import ModuleSpec
from _frozen_importlib_external import EXTENSION_SUFFIXES, ExtensionFileLoader, PathFinder

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType


def set_title(argv: list[str]) -> None:
    """Set the process title to `argv` joined by spaces.

    Cosmetic, so it never fails: nothing happens where setproctitle's module is
    missing (no wheels for some machines, e.g. armv7l) or rejects the title.
    Arguments that are not UTF-8 (surrogate escapes) are shown with U+FFFD.
    """
    title = " ".join(os.fsencode(arg).decode("utf-8", "replace") for arg in argv)
    try:
        module = _load_compiled_setproctitle()
        if module is not None:
            module.setproctitle(title)
    except Exception as e:
        from pypause import log

        log.debug("cannot set the process title: %r" % e)


def _load_compiled_setproctitle() -> "ModuleType | None":
    package = PathFinder.find_spec("setproctitle")
    if package is None or not package.submodule_search_locations:
        return None
    for folder in package.submodule_search_locations:
        for suffix in EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_setproctitle" + suffix)
            if os.path.exists(path):
                loader = ExtensionFileLoader("setproctitle._setproctitle", path)
                module = loader.create_module(ModuleSpec(loader.name, loader, origin=path))
                loader.exec_module(module)
                return module
    return None
