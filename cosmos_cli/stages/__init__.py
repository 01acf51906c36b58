"""Pipeline stages built on :class:`cosmos_cli.pipeline.stage.Stage`."""
