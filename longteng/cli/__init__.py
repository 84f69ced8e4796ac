"""The command-line layer: the only place that prints, and turns errors into exit codes."""
