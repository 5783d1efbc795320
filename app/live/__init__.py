"""Live feeds of a web process: the live tail and the alert stream readers."""
