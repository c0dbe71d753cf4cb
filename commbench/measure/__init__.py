"""Measuring: backends, the timing loop, sweeps, replays, and the worlds they run in."""
