"""The configuration: loading, validation and the frozen model the server runs on."""
