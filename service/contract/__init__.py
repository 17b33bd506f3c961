"""What describes the API surface: the services served, who may call what, errors as google.rpc.Status.

Both transports and the API objects read it; it imports generated descriptors
and ``service.errors`` only: no core, no transport, no ML library.
"""
