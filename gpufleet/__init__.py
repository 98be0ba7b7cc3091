"""gpufleet: a self-hosted GPU ML platform on your own AWS account, or on one machine against emulated AWS."""

__version__ = "0.1.0"
