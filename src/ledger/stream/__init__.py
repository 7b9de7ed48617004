"""Streams in: Kafka topics consumed into facts exactly once (offsets kept with the facts)."""
