"""The API in proto messages: request message in, response message out, over the core.

Both transports call these objects: the gRPC servicers directly, the HTTP
gateway after turning JSON into the same request messages. Errors are the
core's ServiceErrors; each transport maps them to its status codes.
"""
