"""fastnet: a user-space network stack that gives VMs and containers the host's network."""

try:
    from fastnet._version import __version__
except ImportError:  # a source tree that was never built
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
