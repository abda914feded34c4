"""The `meshwarden` command: one entry point, one module per subcommand."""
