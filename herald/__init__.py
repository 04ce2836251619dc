"""Herald: a real-time customer-engagement pipeline on Kafka, Faust and Parquet."""

__version__ = "0.1.0"
