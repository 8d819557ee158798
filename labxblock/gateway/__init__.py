"""Terminal gateway (ASGI): Guacamole relay to guacd and a built-in SSH console.

Imports only labxblock.tickets, labxblock.addresses and its own modules: no Django,
no database, no cloud.
"""
