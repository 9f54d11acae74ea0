"""The CLI's commands, one module per area; rung.cli parses argv and dispatches here."""
