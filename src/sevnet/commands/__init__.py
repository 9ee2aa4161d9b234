"""One module per ``sevnet`` verb (see ``sevnet.cli``)."""
