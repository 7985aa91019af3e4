"""Command-line interface: ``lzn <command>`` (see ``lzn --help``)."""
