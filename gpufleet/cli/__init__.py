"""The ``gpufleet`` operator CLI: thin commands over library functions."""
