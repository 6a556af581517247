"""The `vaktpost` command line, the demo and the scene generator."""
