"""The stream side: the Faust app, its agents and tables, the producer and the broker."""
