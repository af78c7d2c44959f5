"""Console scripts of mosaico_bridge."""
