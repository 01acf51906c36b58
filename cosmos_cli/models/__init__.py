"""Plain ``nn.Module``s and their configs: nothing here knows torchrun, offloading or the CLI."""
