"""The bookkeeping of the compat patches: each applied once per process."""

_APPLIED = set()


def _once(fn):
    def wrapper():
        if fn.__name__ not in _APPLIED:
            fn()
            _APPLIED.add(fn.__name__)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper
