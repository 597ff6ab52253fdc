"""TorchServe: the handler and its config, packaging a registered version, start/stop/swap, the client."""
