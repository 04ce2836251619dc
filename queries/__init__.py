"""Named SQL for analysts, reports, cohorts and segments, run by DuckDB over the landed Parquet."""
