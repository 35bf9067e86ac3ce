"""A package's public names imported on first use (PEP 562): importing one of its modules, e.g. in
a helper process, does not import them all."""

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_names(
    package: str, modules: dict[str, list[str]], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose names are those of ``modules``
    (``{relative module: [names]}``); a name imported is kept in ``namespace``."""
    where = {name: module for module, names in modules.items() for name in names}

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *where})

    return getattr_, dir_
