"""Public names of a package imported on first use (PEP 562), so importing the package (and
`drrgen --help`) loads no Numba, Dask or Zarr."""

from importlib import import_module


def lazy_names(package: str, api: dict[str, str], namespace: dict):
    """(__getattr__, __dir__) for a package whose public names live in submodules.

    Args:
        package: the package's name, for error messages.
        api: public name -> the module that defines it.
        namespace: the package's ``globals()``; a resolved name is cached there.
    """

    def __getattr__(name: str):
        if name not in api:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(api[name]), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(api)

    return __getattr__, __dir__
