"""polycolor_core.runtime: The machine and the disk: devices and distributed setup, precision probes, the cache, atomic writes and folder locks."""
