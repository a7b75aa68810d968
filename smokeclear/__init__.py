"""smokeclear: real-time surgical video desmoking and enhancement."""

__version__ = "0.1.0"
