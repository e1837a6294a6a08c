"""gatehouse: the command line and the one-process demo that ties edge, cloud and simulators."""

__version__ = "0.1.0"
