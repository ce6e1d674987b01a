"""The Databricks SDK's configuration, authentication and HTTP core, without its service modules.

`import databricks.sdk` runs the package's `__init__`, which imports every generated service module
of the SDK to build `WorkspaceClient`: about 37 MiB of the daemon's resident memory (of some 110 MiB
of imports) for API classes this exporter never calls. Its three calls need only `Config` (unified
authentication: PAT, OAuth M2M with refresh, profiles) and the core `ApiClient` (retries, errors).

So the package is entered without running its `__init__`: `databricks.sdk` is registered as a
package whose attributes run the real `__init__` on first use. The submodules load as usual, and
anything else in the process that asks the package for a name (`from databricks.sdk import
WorkspaceClient`) gets the whole SDK as if nothing had happened. Should a later SDK release need
its `__init__` from the core modules, that first use loads it: more memory, same behaviour.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from dataclasses import dataclass

PACKAGE = "databricks.sdk"


class _DeferredPackage(types.ModuleType):
    """A package module whose `__init__` runs at the first lookup of a name it does not have yet
    (a submodule's name excepted: `from . import x` looks it up before importing it)."""

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        spec = self.__dict__.get("__spec__")
        if (name.startswith("__") or self.__dict__.get("_deferred_init_ran") or spec is None
                or importlib.machinery.PathFinder.find_spec(name, self.__path__) is not None):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        self._deferred_init_ran = True
        spec.loader.exec_module(self)  # the real __init__, in this module's namespace
        return getattr(self, name)


def _defer_package_init() -> None:
    if PACKAGE in sys.modules:
        return  # already imported, whole or deferred
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return  # not installed as expected: the plain imports below say what is wrong
    module = _DeferredPackage(PACKAGE)
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__file__ = spec.origin
    module.__path__ = list(spec.submodule_search_locations)
    module.__package__ = PACKAGE
    sys.modules[PACKAGE] = module
    parent, _, child = PACKAGE.rpartition(".")
    setattr(sys.modules[parent], child, module)  # as the import system does for a package it loads


_defer_package_init()

from databricks.sdk.config import Config  # noqa: E402
from databricks.sdk.core import ApiClient  # noqa: E402


@dataclass(frozen=True)
class SdkClient:
    """What this exporter uses of a WorkspaceClient, under the same attribute names."""

    config: Config
    api_client: ApiClient

    @classmethod
    def of(cls, config: Config) -> SdkClient:
        return cls(config, ApiClient(config))
