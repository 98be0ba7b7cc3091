"""Local mode: the whole platform on one machine against an emulated AWS (moto server)."""
