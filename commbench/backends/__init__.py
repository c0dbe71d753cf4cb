"""Communication backends behind one narrow protocol (see torch_dist.TorchBackend)."""
