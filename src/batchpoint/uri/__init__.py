"""Parsing of batch endpoint input spellings (see :mod:`batchpoint.uri.parse`)."""
