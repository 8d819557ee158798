"""A guacd stand-in and a browser-like client: the network edge of the gateway tests."""
