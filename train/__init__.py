"""Training, evaluation and their data recipes. Never imports smokeclear.stream."""
