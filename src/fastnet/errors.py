"""fastnet's exceptions. C error codes become these in exactly one place (_wire.raise_for)."""


class FastnetError(Exception):
    """Base class of every fastnet error."""


class MalformedPacket(FastnetError, ValueError):
    """A frame or packet failed validation; ``reason`` says what is wrong, ``code`` is the C code."""

    def __init__(self, reason: str, code: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ChecksumError(MalformedPacket):
    """A header checksum does not verify."""


class TooManyHoles(FastnetError):
    """The reassembler has no room to track another hole."""


class ConnectionStateError(FastnetError):
    """An operation is not valid in the connection's current state."""


class ConfigError(FastnetError, ValueError):
    """A configuration file or command-line value is invalid."""
