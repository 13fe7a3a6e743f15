"""The network edge of the generator: where times are taken on the wire.

``wirehttp`` is the HTTP client whose answer times are the kernel's receive
stamps, ``tcp_info`` reads the kernel's view of a connection, and ``aio`` is
the bridge that runs asyncio SDKs beside gevent without blocking its hub.
"""
