"""The real-time graph: sources, bounded queues, stage threads, presenter and sinks."""
