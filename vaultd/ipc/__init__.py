"""The Unix-socket protocol, server and clients."""
