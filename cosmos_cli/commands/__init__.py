"""One module per subcommand. Each exposes ``command``; heavy imports (torch, ...) stay inside it."""
