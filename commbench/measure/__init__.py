"""Measuring: backends, the timing loop, sweeps, replays, and the worlds they run in.

The library's calls (commbench.measure.api), imported on first use so that `import commbench.measure`
stays light: SweepSpec, ReplaySpec, sweep(spec, world=None, on_row=None), replay(spec, ...), WorldFailed.
"""

_API = ("SweepSpec", "ReplaySpec", "sweep", "replay")


def __getattr__(name):
    if name in _API:
        from commbench.measure import api

        return getattr(api, name)
    if name == "WorldFailed":
        from commbench.measure.supervise import WorldFailed

        return WorldFailed
    raise AttributeError(f"module 'commbench.measure' has no attribute {name!r}")


__all__ = [*_API, "WorldFailed"]
