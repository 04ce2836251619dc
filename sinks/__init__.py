"""Where events leave the stream: Parquet landing, and later the channel senders."""
