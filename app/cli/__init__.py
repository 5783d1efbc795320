"""The `laas` command line: the top layer, the only part of app that starts agents or web."""
