"""Mosaico wire protocol pieces shared by the client and the embedded server."""
