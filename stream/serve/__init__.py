"""`smokeclear serve`: the operating-room display daemon (docs/operations.md)."""
