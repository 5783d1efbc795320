"""LaaS: the Faust app, settings, topics and the command line."""
