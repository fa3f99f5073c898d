"""cxstream: live customer-experience metrics from Kafka."""
