"""Read-only queries over the results database returning DataFrames; filled by the UI issue."""
